//! Invocation latency: one call of a program that does nothing, host to
//! program and back, timed on the host around each call.

use super::{failed, loaded, timed};
use crate::engine::{BenchError, Prepared, Sample};
use crate::row::{Cell, CellState, Row};
use crate::suite::Group;
use guest_jit::elf::Object;
use std::time::Duration;
use vmm::{Outcome, ProgramId, ProgramInput, Sandbox, SandboxConfig};

/// images/progs/bench/nop.bpf.o: `nop` returns XDP_PASS.
pub(crate) const NOP: &[u8] = include_bytes!("../../../images/progs/bench/nop.bpf.o");
const XDP_PASS: u64 = 2;
/// How long a polling vCPU waits for the next call before it goes idle:
/// longer than the gap between two calls of a batch.
const POLL_BUDGET: Duration = Duration::from_micros(200);

pub(super) fn rows() -> Vec<Row> {
    let row = |name: &str, what: &str, poll: Option<Duration>| Row {
        name: name.to_owned(),
        group: Group::Invocation,
        what: what.to_owned(),
        checked: false,
        pin: None,
        cells: vec![
            Cell {
                column: "vm",
                state: CellState::from_prepared(NopCalls::prepare(poll)),
            },
            Cell {
                column: "kernel",
                state: CellState::from_prepared(super::kernel::NopCalls::prepare()),
            },
        ],
    };
    vec![
        row(
            "call, exit path",
            "one call of a no-op program: the host wakes the vCPU with KVM_RUN, the guest \
             leaves with a VM exit (kernel: one BPF_PROG_TEST_RUN syscall)",
            None,
        ),
        row(
            "call, polling",
            "one call of a no-op program to a polling vCPU: the request and the answer \
             pass through shared memory, no exit (kernel: one BPF_PROG_TEST_RUN syscall)",
            Some(POLL_BUDGET),
        ),
    ]
}

/// Calls of `nop` in a sandbox.
struct NopCalls {
    sandbox: Sandbox,
    nop: ProgramId,
}

impl NopCalls {
    fn prepare(poll: Option<Duration>) -> Result<Box<dyn Prepared>, BenchError> {
        let object = Object::parse(NOP).map_err(|e| failed(&e))?;
        let config = SandboxConfig {
            poll,
            ..SandboxConfig::default()
        };
        let (sandbox, nop) = loaded(&object, config, "nop")?;
        Ok(Box::new(NopCalls { sandbox, nop }))
    }
}

impl Prepared for NopCalls {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        let input = ProgramInput::new(&[]).with_timeout(Duration::from_secs(5));
        timed(repeat, || {
            let run = self
                .sandbox
                .run_program(self.nop, 0, &input)
                .map_err(|e| BenchError::Failed(e.to_string()))?;
            match run.report.outcome {
                Outcome::Returned(XDP_PASS) => Ok(XDP_PASS),
                other => Err(BenchError::Failed(format!("nop ended with {other:?}"))),
            }
        })
    }
}
