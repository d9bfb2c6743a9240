//! JIT compile time: a random, valid program of about 10,000 instructions
//! compiled many times; prints the median per 1,000 instructions.
//!
//! `cargo bench -p guest-jit --bench jit`

use std::hint::black_box;
use std::time::Instant;

use guest_jit::jit::{JitConfig, compile};

#[path = "../tests/jit_forms/random.rs"]
#[allow(dead_code, reason = "shared with the tests, which use more of it")]
mod random;

const PROGRAM_SLOTS: usize = 10_000;
const RUNS: usize = 101;

fn helper_addr(id: u32) -> Option<u64> {
    Some(0x20_0000 + 16 * u64::from(id))
}

fn main() {
    let mut rng = random::Rng::new(1);
    let program = random::program(&mut rng, PROGRAM_SLOTS, 8);
    let instructions = program.iter().count();
    let config = JitConfig {
        code_addr: 0x60_0000,
        helper_addr: &helper_addr,
        kfunc_addr: &|_| None,
        percpu_loads: &[],
        arena_upper: 0,
        may_goto_budget: guest_jit::interp::MAY_GOTO_BUDGET,
        map_headers: 0..0,
    };
    let mut code_size = 0;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let output = compile(black_box(&program), &config);
        let elapsed = start.elapsed();
        match output {
            Ok(output) => code_size = output.code.len(),
            Err(err) => {
                eprintln!("jit bench: compile failed: {err}");
                std::process::exit(1);
            }
        }
        times.push(elapsed.as_nanos());
    }
    times.sort_unstable();
    let median = times[RUNS / 2];
    println!(
        "jit compile: {} ns per 1000 insns ({instructions} insns, {code_size} bytes of code, median of {RUNS} runs: {median} ns)",
        median * 1000 / instructions as u128,
    );
}
