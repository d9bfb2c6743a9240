//! Rows that time the machinery around programs rather than a program:
//! invoking one, making a sandbox ready, ring buffer throughput. Each
//! cell is built here by hand, for the columns that have a counterpart.

mod invocation;
mod startup;

use crate::row::Row;

/// The system rows, in table order.
pub fn rows() -> Vec<Row> {
    let mut rows = invocation::rows();
    rows.extend(startup::rows());
    rows
}

/// Time per run of `repeat` runs of `f`, timed on the host.
fn timed<E>(
    repeat: u32,
    mut f: impl FnMut() -> Result<u64, E>,
) -> Result<crate::Sample, E> {
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
