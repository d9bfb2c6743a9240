//! Every workload through every engine of this crate, once: the time per
//! run (median of a few batches) and the checksum, for a quick look
//! before `bpfvisor bench`.
//!
//! `cargo run --release -p bench --example engines [REPEAT]`

use bench::engines::{interp::InterpEngine, native::NativeEngine, rbpf::RbpfEngine, vm::VmEngine};
use bench::{BenchError, Engine, workloads};
use std::time::Duration;

const BATCHES: usize = 5;

fn main() {
    let repeat: u32 = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(100);
    let engines: Vec<Box<dyn Engine>> = vec![
        Box::new(VmEngine),
        Box::new(InterpEngine),
        Box::new(RbpfEngine),
        Box::new(NativeEngine),
    ];
    for workload in workloads() {
        for engine in &engines {
            let cell = measure(engine.as_ref(), &workload, repeat);
            println!("{:<16} {:<8} {cell}", workload.name, engine.name());
        }
    }
}

fn measure(engine: &dyn Engine, workload: &bench::Workload, repeat: u32) -> String {
    let mut prepared = match engine.prepare(workload) {
        Ok(p) => p,
        Err(BenchError::Unsupported(why)) => return format!("- ({why})"),
        Err(e) => return format!("FAILED: {e}"),
    };
    // Interpreted runs are slow: fewer of them.
    let repeat = if engine.name() == "interp" {
        repeat.div_ceil(20)
    } else {
        repeat
    };
    let mut times: Vec<Duration> = Vec::new();
    let mut result = 0;
    for _ in 0..BATCHES {
        match prepared.run(repeat) {
            Ok(sample) => {
                times.push(sample.per_run);
                result = sample.result;
            }
            Err(e) => return format!("FAILED: {e}"),
        }
    }
    times.sort();
    format!("{:>12.2?}  result {result:#018x}", times[BATCHES / 2])
}
