//! The side-by-side benchmark suite behind `bpfvisor bench`.
//!
//! A [`Workload`] is one row: a clang-built object from
//! `images/progs/bench/` and the program in it to time. Each [`Engine`] is
//! one column: it prepares the workload (or says why it cannot run it) and
//! then runs it `repeat` times back to back, timing the loop the way that
//! engine can (inside the VM, inside the kernel's `BPF_PROG_TEST_RUN`).
//! Every engine must produce the same checksum for a workload, so a column
//! that computed something else is an error, not a fast figure. System
//! rows ([`system`]) time invocation, start-up and ring buffers with
//! cells made by hand. [`runner::measure`] measures the rows in
//! interleaved rounds and [`report::Report`] prints, saves and draws them.

mod chart;
pub mod engine;
pub mod engines;
pub mod machine;
pub mod native;
pub mod object;
pub mod report;
pub mod row;
pub mod runner;
pub mod suite;
pub mod system;

pub use engine::{BenchError, Engine, Prepared, Sample, Unsupported};
pub use suite::{Group, Workload, workloads};
pub mod session;
