//! Per-CPU counters against a shared atomic counter, measured side by side
//! in one run: `percpu_bench`'s programs add 1 to a `.percpu` u64, to a
//! PERCPU_ARRAY element (lookup each time) or, atomically, to a shared
//! `.bss` u64, N times in a loop inside one run, on 1 vCPU and on 2 vCPUs
//! at once. Prints the median guest time per increment (the slowest vCPU's,
//! on 2) and checks the counters.
//!
//! `cargo bench -p integration-tests --bench percpu`.

use guest_jit::elf::Object;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const BENCH: &[u8] = include_bytes!("../../images/progs/percpu_bench.bpf.o");
/// Increments per run.
const N: u64 = 1_000_000;
const ROUNDS: usize = 15;
const PROGRAMS: [&str; 3] = ["inc_percpu_data", "inc_percpu_array", "inc_shared_atomic"];

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One run of `name` on each of `cpus` at once; the slowest vCPU's guest
/// time, and each vCPU's return value.
fn run(sandbox: &Sandbox, name: &str, cpus: &[usize]) -> (Duration, Vec<u64>) {
    let id = sandbox.find_program(name).expect("program");
    let input = ProgramInput {
        data: &N.to_le_bytes(),
        repeat: 1,
        timeout: Some(Duration::from_secs(60)),
    };
    let mut slowest = Duration::ZERO;
    let mut values = Vec::new();
    for result in sandbox.run_program_on(id, cpus, &input) {
        let run = result.expect("run");
        let Outcome::Returned(value) = run.report.outcome else {
            panic!("{name}: {:?}", run.report.outcome);
        };
        slowest = slowest.max(run.report.duration);
        values.push(value);
    }
    (slowest, values)
}

fn main() {
    if !vmm::kvm::is_available() {
        eprintln!("SKIPPED percpu bench: /dev/kvm is not usable");
        return;
    }
    let object = Object::parse(BENCH).expect("object");
    println!("percpu bench: {N} increments per run, median of {ROUNDS} runs, ns per increment");
    for cpus in [&[0][..], &[0, 1][..]] {
        let mut sandbox = Sandbox::new(SandboxConfig {
            cpus: 2,
            ..SandboxConfig::default()
        })
        .expect("sandbox");
        sandbox
            .load_object(&object, HelperSet::Standard)
            .expect("load");
        for name in PROGRAMS {
            // One warm-up run touches the pages.
            run(&sandbox, name, cpus);
            let mut samples = Vec::new();
            let mut last = Vec::new();
            for _ in 0..ROUNDS {
                let (time, values) = run(&sandbox, name, cpus);
                samples.push(time);
                last = values;
            }
            let runs = (ROUNDS + 1) as u64;
            let expected = if name == "inc_shared_atomic" {
                runs * N * cpus.len() as u64
            } else {
                runs * N
            };
            // Per-CPU counters: each vCPU saw only its own increments; the
            // shared one: the last to finish saw everyone's.
            assert!(
                last.iter().all(|&v| v == expected)
                    || (name == "inc_shared_atomic" && last.contains(&expected)),
                "{name} on {cpus:?}: {last:?}, expected {expected}"
            );
            let per = median(samples).as_secs_f64() * 1e9 / N as f64;
            println!("  {} vCPU(s)  {name:<18} {per:7.3} ns", cpus.len());
        }
    }
}
