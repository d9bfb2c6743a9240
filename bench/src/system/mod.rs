//! Rows that time the machinery around programs rather than a program:
//! invoking one, making a sandbox ready, ring buffer throughput. Each
//! cell is built here by hand, for the columns that have a counterpart.

mod invocation;
mod kernel;
pub(crate) mod ringbuf;
mod startup;

use crate::row::Row;
use guest_jit::elf::Object;
use vmm::{HelperSet, ProgramId, Sandbox, SandboxConfig};

/// The system rows, in table order.
pub fn rows() -> Vec<Row> {
    let mut rows = ringbuf::rows();
    rows.extend(invocation::rows());
    rows.extend(startup::rows());
    rows
}

/// Time per run of `repeat` runs of `f`, timed on the host.
fn timed<E>(repeat: u32, mut f: impl FnMut() -> Result<u64, E>) -> Result<crate::Sample, E> {
    let start = std::time::Instant::now();
    let mut result = 0;
    for _ in 0..repeat {
        result = f()?;
    }
    Ok(crate::Sample {
        per_run: start.elapsed() / repeat.max(1),
        result,
    })
}

fn failed(e: &dyn std::fmt::Display) -> crate::BenchError {
    crate::BenchError::Failed(e.to_string())
}

/// A sandbox made with `config` (a `-` without KVM), `object` loaded in
/// it, and its program `program`.
fn loaded(
    object: &Object,
    config: SandboxConfig,
    program: &str,
) -> Result<(Sandbox, ProgramId), crate::BenchError> {
    crate::engines::vm::kvm_usable()?;
    let mut sandbox = Sandbox::new(config).map_err(|e| failed(&e))?;
    sandbox
        .load_object(object, HelperSet::Standard)
        .map_err(|e| failed(&e))?;
    let id = sandbox
        .find_program(program)
        .ok_or_else(|| crate::BenchError::Failed(format!("the object has no `{program}`")))?;
    Ok((sandbox, id))
}
