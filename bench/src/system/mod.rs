//! Rows that time the machinery around programs rather than a program:
//! invoking one, making a sandbox ready, ring buffer throughput. Each
//! cell is built here by hand, for the columns that have a counterpart.

mod invocation;
mod kernel;
pub(crate) mod ringbuf;
mod startup;

use crate::row::Row;

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

/// The global `u64` variable `name` of `object` loaded in `sandbox`, read
/// from its data section's map.
pub(crate) fn global_u64(
    sandbox: &vmm::Sandbox,
    object: &guest_jit::elf::Object,
    name: &str,
) -> Result<u64, String> {
    let var = object
        .variables()
        .iter()
        .find(|v| v.name == name && v.size == 8)
        .ok_or_else(|| format!("no global __u64 `{name}`"))?;
    let map = sandbox
        .find_map(&var.section)
        .ok_or_else(|| format!("no map for section {}", var.section))?;
    let value = map
        .lookup(&0u32.to_le_bytes())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} has no value", var.section))?;
    let at = usize::try_from(var.offset).map_err(|e| e.to_string())?;
    value
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| format!("`{name}` lies outside {}", var.section))
}
