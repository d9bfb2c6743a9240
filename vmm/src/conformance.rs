//! The bpf_conformance suite run in a real VM: each test's program goes
//! through the verifier and the JIT and runs on a vCPU, with the suite's
//! `-- mem` bytes as the context (r1 points at them, r2 holds their length)
//! and the suite's helper 5 ([`HelperSet::Conformance`]).

use crate::helpers::HelperSet;
use crate::program::{LoadError, ProgramInput, TrapSite, unlinked};
use crate::sandbox::{Outcome, RunError, Sandbox, SandboxConfig, SandboxError};
use crate::trap::Trap;
use guest_jit::conformance::{CaseError, CheckError, TestCase, judge, program_of};
use std::time::Duration;

/// Wall-clock budget of one test; the slowest needs microseconds.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a test's program did not return a value in the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmCaseError {
    /// Assembling or decoding failed, as in the interpreter.
    #[error(transparent)]
    Program(#[from] CaseError),
    /// No sandbox could be built.
    #[error("Failed to build a sandbox")]
    CreateSandbox(#[source] SandboxError),
    /// The verifier or the JIT refused the program.
    #[error("Loading the program failed")]
    Load(#[source] Box<LoadError>),
    /// The run could not happen.
    #[error("Running the program failed")]
    Run(#[source] Box<RunError>),
    /// The program trapped.
    #[error("Program trapped: {trap}{}", site.as_ref().map(|s| format!(" at {s}")).unwrap_or_default())]
    Trap {
        /// The exception.
        trap: Trap,
        /// Where in the program.
        site: Option<Box<TrapSite>>,
    },
    /// The program ran past [`CASE_TIMEOUT`].
    #[error("Program ran past its deadline of {0:?}")]
    Deadline(Duration),
}

/// Runs the test's program in a fresh one-vCPU sandbox and returns r0.
pub fn run_case_in_vm(case: &TestCase) -> Result<u64, VmCaseError> {
    let program = program_of(case)?;
    let mut sandbox = Sandbox::new(SandboxConfig {
        rodata_size: 0,
        data_size: 0,
        maps_size: 0,
        ..SandboxConfig::default()
    })
    .map_err(VmCaseError::CreateSandbox)?;
    let id = sandbox
        .load_program(unlinked("conformance", program), HelperSet::Conformance)
        .map_err(|e| VmCaseError::Load(Box::new(e)))?;
    let input = ProgramInput {
        data: &case.mem,
        repeat: 1,
        timeout: Some(CASE_TIMEOUT),
    };
    let run = sandbox
        .run_program(id, 0, &input)
        .map_err(|e| VmCaseError::Run(Box::new(e)))?;
    match run.report.outcome {
        Outcome::Returned(value) => Ok(value),
        Outcome::Trapped(trap) => Err(VmCaseError::Trap {
            trap,
            site: run.trap_site.map(Box::new),
        }),
        Outcome::DeadlineExceeded(limit) => Err(VmCaseError::Deadline(limit)),
    }
}

/// Runs the test in the VM and compares the outcome with its expectation.
pub fn check_case_in_vm(case: &TestCase) -> Result<(), CheckError<VmCaseError>> {
    judge(&case.expected, run_case_in_vm(case))
}
