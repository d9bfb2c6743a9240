//! What every column of the table implements.

use crate::suite::Workload;
use std::time::Duration;

/// One timed batch of runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Time per run, as the engine measures its loop of runs.
    pub per_run: Duration,
    /// The workload's checksum after the batch: the 64-bit global
    /// `result` of the program (or what the native code computes). Equal in
    /// every engine, or the column is wrong.
    pub result: u64,
}

/// Why an engine cannot run a workload at all (a `-` in the table, with
/// the reason in a footnote). Not an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// A failure of an engine on a workload it should be able to run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The engine cannot run it; see [`Unsupported`].
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// Anything else, with its message.
    #[error("{0}")]
    Failed(String),
}

/// One column: a way of running a workload.
pub trait Engine {
    /// Short column name (`vm`, `interp`, `kernel`, `rbpf`, `native`).
    fn name(&self) -> &'static str;

    /// Makes `workload` ready to run: parse, load, compile.
    fn prepare(&self, workload: &Workload) -> Result<Box<dyn Prepared>, BenchError>;
}

/// A workload loaded into an engine.
pub trait Prepared {
    /// Runs the program `repeat` times back to back (the program's global
    /// data as the previous batch left it) and times the loop.
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError>;
}
