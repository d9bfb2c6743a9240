//! Ring buffer throughput: programs on 1 or 2 vCPUs produce 8-byte
//! records (`ringbuf_bench`) into a 512 KiB ring while a host thread
//! consumes them, all rows in one run. Prints, per row, the median of
//! several runs: records per second (from the run's start until the
//! consumer has every record), the wakeups the consumer got and the VM
//! exits the runs took to the VMM, per million records, and how often a
//! producer found the ring full.
//!
//! Rows: the consumer waiting in `poll` (self-paced wakeups, the default
//! commit) or spinning in `consume` (commits with `BPF_RB_NO_WAKEUP`);
//! `bpf_ringbuf_reserve` + `submit` or `bpf_ringbuf_output`.
//!
//! `cargo bench -p integration-tests --bench ringbuf`.

use guest_jit::elf::Object;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const BENCH: &[u8] = include_bytes!("../../images/progs/ringbuf_bench.bpf.o");
/// Records per producer per run.
const COUNT: u64 = 2_000_000;
const ROUNDS: usize = 9;
const RB_NO_WAKEUP: u64 = 1;

struct Row {
    name: &'static str,
    program: &'static str,
    cpus: &'static [usize],
    flags: u64,
    busy_poll: bool,
}

const ROWS: [Row; 5] = [
    Row {
        name: "1 producer, reserve+submit, consumer polls",
        program: "produce",
        cpus: &[0],
        flags: 0,
        busy_poll: false,
    },
    Row {
        name: "2 producers, reserve+submit, consumer polls",
        program: "produce",
        cpus: &[0, 1],
        flags: 0,
        busy_poll: false,
    },
    Row {
        name: "1 producer, reserve+submit NO_WAKEUP, consumer spins",
        program: "produce",
        cpus: &[0],
        flags: RB_NO_WAKEUP,
        busy_poll: true,
    },
    Row {
        name: "2 producers, reserve+submit NO_WAKEUP, consumer spins",
        program: "produce",
        cpus: &[0, 1],
        flags: RB_NO_WAKEUP,
        busy_poll: true,
    },
    Row {
        name: "1 producer, output, consumer polls",
        program: "output",
        cpus: &[0],
        flags: 0,
        busy_poll: false,
    },
];

/// One run's figures.
struct Sample {
    rate: f64,
    wakeups: u64,
    exits: u64,
    retries: u64,
}

fn run_once(sandbox: &Sandbox, row: &Row) -> Sample {
    let mut consumer = sandbox.ring_buffer("rb").expect("consumer");
    let total = COUNT * row.cpus.len() as u64;
    let mut args = [0u8; 16];
    args[..8].copy_from_slice(&COUNT.to_le_bytes());
    args[8..].copy_from_slice(&row.flags.to_le_bytes());
    let input = ProgramInput {
        data: &args,
        repeat: 1,
        timeout: Some(Duration::from_secs(120)),
    };
    let id = sandbox.find_program(row.program).expect("program");
    let failed = AtomicBool::new(false);
    let start = Instant::now();
    let (end, wakeups, runs) = std::thread::scope(|s| {
        let failed = &failed;
        let reader = s.spawn(move || {
            let mut got = 0u64;
            let mut sum = 0u64;
            while got < total && !failed.load(Ordering::Relaxed) {
                let count = |r: &vmm::Record<'_>| {
                    sum = sum.wrapping_add(r.read_pod::<u64>(0).unwrap_or(0));
                };
                let n = if row.busy_poll {
                    let n = consumer.consume(count);
                    if matches!(n, Ok(0)) {
                        // A busy poller that does not hammer the
                        // producer's cache lines when there is nothing.
                        (0..64).for_each(|_| std::hint::spin_loop());
                    }
                    n
                } else {
                    consumer.poll(Some(Duration::from_millis(100)), count)
                };
                got += n.expect("consume") as u64;
            }
            let expected = (COUNT * (COUNT - 1) / 2).wrapping_mul(row.cpus.len() as u64);
            assert!(
                failed.load(Ordering::Relaxed) || sum == expected,
                "records lost"
            );
            (Instant::now(), consumer.wakeups())
        });
        let runs = sandbox.run_program_on(id, row.cpus, &input);
        if runs.iter().any(|r| r.is_err()) {
            failed.store(true, Ordering::Relaxed);
        }
        let (end, wakeups) = reader.join().expect("consumer thread");
        (end, wakeups, runs)
    });
    let mut exits = 0;
    let mut retries = 0;
    for run in runs {
        let run = run.expect("run");
        let Outcome::Returned(r) = run.report.outcome else {
            panic!("{}: {:?}", row.name, run.report.outcome);
        };
        assert_ne!(r as i32, -1, "{}: a producer gave up", row.name);
        retries += r;
        exits += run.report.exits;
    }
    Sample {
        rate: total as f64 / (end - start).as_secs_f64(),
        wakeups,
        exits,
        retries,
    }
}

fn main() {
    if !vmm::kvm::is_available() {
        eprintln!("SKIPPED ringbuf bench: /dev/kvm is not usable");
        return;
    }
    let object = Object::parse(BENCH).expect("object");
    let mut sandbox = Sandbox::new(SandboxConfig {
        cpus: 2,
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    sandbox
        .load_object(&object, HelperSet::Standard)
        .expect("load");
    println!(
        "ringbuf bench: {COUNT} 8-byte records per producer per run, 512 KiB ring, \
         median of {ROUNDS} runs"
    );
    println!(
        "{:<55} {:>10} {:>12} {:>12} {:>12}",
        "", "M rec/s", "wakeups/M", "exits/M", "full/M"
    );
    // Rounds interleave the rows, so that each row's median samples the
    // same stretch of this noisy machine.
    let mut samples: Vec<Vec<Sample>> = ROWS.iter().map(|_| Vec::new()).collect();
    for round in 0..=ROUNDS {
        for (row, kept) in ROWS.iter().zip(&mut samples) {
            let sample = run_once(&sandbox, row);
            // Round 0 warms up: it touches the ring's pages.
            if round > 0 {
                kept.push(sample);
            }
        }
    }
    // The producer's own cost, with no consumer touching the ring: as many
    // records as fit, then consumed before the next run.
    let fit = 30_000u64;
    let mut alone = Vec::new();
    let id = sandbox.find_program("produce").expect("program");
    for _ in 0..ROUNDS {
        let mut consumer = sandbox.ring_buffer("rb").expect("consumer");
        let mut args = [0u8; 16];
        args[..8].copy_from_slice(&fit.to_le_bytes());
        args[8..].copy_from_slice(&RB_NO_WAKEUP.to_le_bytes());
        let input = ProgramInput {
            data: &args,
            repeat: 1,
            timeout: Some(Duration::from_secs(60)),
        };
        let run = sandbox.run_program(id, 0, &input).expect("run");
        assert_eq!(run.report.outcome, Outcome::Returned(0));
        alone.push(run.report.duration.as_nanos() as f64 / fit as f64);
        assert_eq!(consumer.consume(|_| {}).expect("consume") as u64, fit);
    }
    alone.sort_by(f64::total_cmp);
    for (row, mut kept) in ROWS.iter().zip(samples) {
        kept.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let m = &kept[ROUNDS / 2];
        let per_million = |n: u64| n as f64 * 1e6 / (COUNT * row.cpus.len() as u64) as f64;
        println!(
            "{:<55} {:>10.2} {:>12.1} {:>12.2} {:>12.0}   (min {:.2}, max {:.2})",
            row.name,
            m.rate / 1e6,
            per_million(m.wakeups),
            per_million(m.exits),
            per_million(m.retries),
            kept[0].rate / 1e6,
            kept[ROUNDS - 1].rate / 1e6,
        );
    }
    println!(
        "producer alone (no consumer, {fit} records, guest time): {:.1} ns per record = {:.2} M rec/s",
        alone[ROUNDS / 2],
        1e3 / alone[ROUNDS / 2]
    );
}
