//! The side-by-side benchmark suite behind `bpfvisor bench`.
//!
//! A [`Workload`] is one row: a clang-built object from
//! `images/progs/bench/` and the program in it to time. Each [`Engine`] is
//! one column: it prepares the workload (or says why it cannot run it) and
//! then runs it `repeat` times back to back, timing the loop the way that
//! engine can (inside the VM, inside the kernel's `BPF_PROG_TEST_RUN`).
//! Every engine must produce the same checksum for a workload, so a column
//! that computed something else is an error, not a fast figure.

pub mod engine;
pub mod engines;
pub mod native;
pub mod object;
pub mod suite;

pub use engine::{BenchError, Engine, Prepared, Sample, Unsupported};
pub use suite::{Group, Workload, workloads};
