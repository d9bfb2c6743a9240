//! The `kernel` column: the workload loaded into the host kernel with raw
//! bpf() calls (`kernel-bpf`) as an XDP program, whose
//! `BPF_PROG_TEST_RUN` honours `repeat` and times the loop inside the
//! kernel (a syscall program's would run once); the checksum is the
//! global `result` read back from its data section's map.

use super::error_chain;
use crate::engine::{BenchError, Engine, Prepared, Sample, Unsupported};
use crate::suite::Workload;
use guest_jit::elf::Object;
use kernel_bpf::{KernelError, KernelObject, LoadOptions, ProgramType};

/// The global every workload leaves its checksum in.
const RESULT: &str = "result";

/// The host kernel's BPF JIT, through `BPF_PROG_TEST_RUN`.
#[derive(Debug, Default)]
pub struct KernelEngine;

impl Engine for KernelEngine {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn prepare(&self, workload: &Workload) -> Result<Box<dyn Prepared>, BenchError> {
        let object = Object::parse(workload.object)
            .map_err(|e| BenchError::Failed(format!("{}: {e}", workload.name)))?;
        if !object
            .variables()
            .iter()
            .any(|v| v.name == RESULT && v.size == 8)
        {
            return Err(BenchError::Failed(format!(
                "{}: the object has no 8-byte global `{RESULT}`",
                workload.name
            )));
        }
        let options = LoadOptions {
            program_type: Some(ProgramType::Xdp),
            programs: vec![workload.program.to_owned()],
        };
        let object = KernelObject::load(&object, &options).map_err(refusal)?;
        Ok(Box::new(KernelRun {
            object,
            program: workload.program,
        }))
    }
}

/// What the kernel refused is a `-` in the table with the reason; only
/// failures of what should have worked are errors.
pub(crate) fn refusal(e: KernelError) -> BenchError {
    match e {
        KernelError::LoadProgram { reason, .. } => {
            Unsupported(format!("the kernel's verifier refuses it: {reason}")).into()
        }
        KernelError::Unsupported(what) => Unsupported(what).into(),
        e if e.is_unavailable() => Unsupported(e.to_string()).into(),
        e => BenchError::Failed(error_chain(&e)),
    }
}

/// A workload loaded into the kernel.
struct KernelRun {
    object: KernelObject,
    program: &'static str,
}

impl Prepared for KernelRun {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        let failed = |e: KernelError| BenchError::Failed(error_chain(&e));
        let program = self.object.program(self.program).map_err(failed)?;
        let run = program.test_run(&[], repeat).map_err(failed)?;
        let result = global_u64(&self.object, RESULT).map_err(BenchError::Failed)?;
        Ok(Sample {
            per_run: run.duration,
            result,
        })
    }
}

/// The global `__u64` variable `name` of `object` as the kernel holds it.
pub(crate) fn global_u64(object: &KernelObject, name: &str) -> Result<u64, String> {
    let bytes = object.read_global(name).map_err(|e| error_chain(&e))?;
    <[u8; 8]>::try_from(bytes.as_slice())
        .map(u64::from_le_bytes)
        .map_err(|_| format!("`{name}` is not 8 bytes"))
}
