//! Differential test: thousands of random valid programs (every ALU and
//! jump form, loads and stores of every size, sign-extending loads,
//! acquire/release, every atomic, counted loops, local calls and the unwind
//! helper) run through the verifier and the JIT in a real VM and through
//! the reference interpreter; r0 and the context bytes must agree.
#![allow(clippy::unwrap_used, reason = "tests")]

use integration_tests::kvm_available;
use integration_tests::progen::{GenProgram, program, run_in_interpreter};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::RefCell;
use std::time::Duration;
use vmm::program::unlinked;
use vmm::{HelperSet, LoadError, Outcome, ProgramInput, Sandbox, SandboxConfig};

/// Programs per sandbox before a fresh one is built (the code region fills).
const PROGRAMS_PER_SANDBOX: usize = 200;

struct Vm {
    sandbox: Sandbox,
    loaded: usize,
}

impl Vm {
    fn new() -> Vm {
        Vm {
            sandbox: Sandbox::new(SandboxConfig::default()).unwrap(),
            loaded: 0,
        }
    }

    /// Loads and runs `generated` once; returns r0 and the context after.
    fn run(&mut self, generated: &GenProgram) -> Result<(u64, Vec<u8>), String> {
        if self.loaded == PROGRAMS_PER_SANDBOX {
            *self = Vm::new();
        }
        self.loaded += 1;
        let linked = unlinked("generated", generated.lower());
        let id = match self.sandbox.load_program(linked, HelperSet::Conformance) {
            Ok(id) => id,
            Err(e @ LoadError::Fit { .. }) => return Err(format!("{e}: raise the sandbox size")),
            Err(e) => return Err(format!("load: {e:?}")),
        };
        let input = ProgramInput {
            data: &generated.ctx,
            repeat: 1,
            timeout: Some(Duration::from_secs(10)),
        };
        let run = self
            .sandbox
            .run_program(id, 0, &input)
            .map_err(|e| format!("run: {e}"))?;
        match run.report.outcome {
            Outcome::Returned(value) => Ok((value, run.data_out)),
            other => Err(format!("{other:?} at {:?}", run.trap_site)),
        }
    }
}

fn check(cases: u32, calls: bool) {
    let vm = RefCell::new(Vm::new());
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    runner
        .run(&program(calls), |generated| {
            let program = generated.lower();
            let expected = run_in_interpreter(&program, &generated.ctx)
                .map_err(|e| TestCaseError::fail(format!("interpreter: {e}")))?;
            let actual = vm
                .borrow_mut()
                .run(&generated)
                .map_err(TestCaseError::fail)?;
            if actual != expected {
                return Err(TestCaseError::fail(format!(
                    "JIT {actual:x?} != interpreter {expected:x?}\n{}",
                    guest_jit::disasm::disassemble(&program)
                )));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn jit_agrees_with_interpreter_on_straight_line_and_loops() {
    if !kvm_available("jit_agrees_with_interpreter_on_straight_line_and_loops") {
        return;
    }
    check(3000, false);
}

#[test]
fn jit_agrees_with_interpreter_with_calls_and_unwinding() {
    if !kvm_available("jit_agrees_with_interpreter_with_calls_and_unwinding") {
        return;
    }
    check(2000, true);
}
