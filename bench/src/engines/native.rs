//! The `native` column: the Rust equivalent of a compute row
//! ([`crate::native`]), called `repeat` times in a loop.

use crate::engine::{BenchError, Engine, Prepared, Sample, Unsupported};
use crate::suite::Workload;
use std::hint::black_box;
use std::time::Instant;

/// Runs a workload's native equivalent.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeEngine;

impl Engine for NativeEngine {
    fn name(&self) -> &'static str {
        "native"
    }

    fn prepare(&self, workload: &Workload) -> Result<Box<dyn Prepared>, BenchError> {
        let compute = workload.native.ok_or_else(|| {
            Unsupported("no native equivalent: only compute rows have one".into())
        })?;
        // Once outside the timing: the inputs are generated on first use.
        black_box(compute());
        Ok(Box::new(NativePrepared { compute }))
    }
}

/// The function to call.
#[derive(Debug)]
struct NativePrepared {
    compute: fn() -> u64,
}

impl Prepared for NativePrepared {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        let repeat = repeat.max(1);
        let compute = black_box(self.compute);
        let mut result = 0;
        let start = Instant::now();
        for _ in 0..repeat {
            result = black_box(compute());
        }
        let elapsed = start.elapsed();
        Ok(Sample {
            per_run: elapsed / repeat,
            result,
        })
    }
}
