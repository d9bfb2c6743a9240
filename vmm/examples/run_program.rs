//! Build a sandbox from object bytes, invoke programs with input bytes and
//! read what they produced: the return value, the context buffer written
//! back, `bpf_printk` lines and the cost of the run. Then what happens when
//! a program faults (a trap that names its C source line) or never returns
//! (a deadline, and a reset).
//!
//! Run it with `cargo run -p vmm --example run_program`. It checks every
//! result against what the samples' header comments say
//! (`images/progs/{hello,compute,null_read,spin}.bpf.c`) and exits non-zero
//! if one differs.

use guest_jit::elf::Object;
use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, ProgramRun, Sandbox, SandboxConfig};

// Clang-built BPF objects (`clang -target bpf -g -O2 -c`), as a platform
// would receive them from its users.
const HELLO: &[u8] = include_bytes!("../../images/progs/hello.bpf.o");
const COMPUTE: &[u8] = include_bytes!("../../images/progs/compute.bpf.o");
const NULL_READ: &[u8] = include_bytes!("../../images/progs/null_read.bpf.o");
const SPIN: &[u8] = include_bytes!("../../images/progs/spin.bpf.o");

/// The context of `fnv1a` in compute.bpf.c: `struct hash_args`.
const HASH_ARGS_SIZE: usize = 16 + 4096;

/// The example; an error if a result is not what the samples say.
fn run() -> Result<(), Box<dyn Error>> {
    // One micro-VM with one vCPU; every other size has a sensible default.
    let mut sandbox = Sandbox::new(SandboxConfig {
        cpus: 1,
        ..SandboxConfig::default()
    })?;

    // Load objects: each object's maps are created, its programs verified
    // and JIT-compiled into the sandbox. Several objects may share one
    // sandbox; programs are then found by name.
    for bytes in [HELLO, COMPUTE, NULL_READ, SPIN] {
        let object = Object::parse(bytes)?;
        sandbox.load_object(&object, HelperSet::Standard)?;
    }

    // hello: no input; returns 42 and prints one trace line.
    let hello = sandbox.find_program("hello").ok_or("no program `hello`")?;
    let run = sandbox.run_program(
        hello,
        0,
        &ProgramInput {
            data: &[],
            repeat: 1,
            timeout: Some(Duration::from_secs(1)),
        },
    )?;
    describe("hello", &run);
    ensure(
        run.report.outcome == Outcome::Returned(42),
        "hello returns 42",
    )?;
    ensure(
        run.trace == ["Hello from bpfvisor, answer=42"],
        "hello prints its answer",
    )?;

    // fnv1a: the request body goes in the context buffer (r1 points at it,
    // r2 is its length); the program writes its answer into the same
    // buffer, which comes back as `data_out`.
    let body = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let mut args = vec![0u8; HASH_ARGS_SIZE];
    args[0..4].copy_from_slice(&(body.len() as u32).to_le_bytes()); // len
    args[4..8].copy_from_slice(&1u32.to_le_bytes()); // rounds
    args[16..16 + body.len()].copy_from_slice(body); // data
    let fnv1a = sandbox.find_program("fnv1a").ok_or("no program `fnv1a`")?;
    let run = sandbox.run_program(
        fnv1a,
        0,
        &ProgramInput {
            data: &args,
            repeat: 1,
            timeout: Some(Duration::from_secs(1)),
        },
    )?;
    describe("fnv1a", &run);
    let hash = u64::from_le_bytes(run.data_out[8..16].try_into()?);
    println!("  hash of the request: {hash:#018x}");
    ensure(hash == fnv1a_host(body), "fnv1a computes FNV-1a 64")?;

    // The same input run 1,000 times inside the guest, without leaving it:
    // how benchmarks measure the cost of a run.
    let run = sandbox.run_program(
        fnv1a,
        0,
        &ProgramInput {
            data: &args,
            repeat: 1000,
            timeout: Some(Duration::from_secs(5)),
        },
    )?;
    let per_run = run.report.duration / run.report.runs.max(1) as u32;
    println!(
        "fnv1a x{}: {per_run:?} per run, {} VM exit(s) in all",
        run.report.runs, run.report.exits
    );
    ensure(run.report.runs == 1000, "all 1,000 runs complete")?;

    // null_read faults: the trap is reported with the instruction and C
    // source line, and the sandbox stays usable.
    let null_read = sandbox
        .find_program("null_read")
        .ok_or("no program `null_read`")?;
    let run = sandbox.run_program(
        null_read,
        0,
        &ProgramInput {
            data: &[],
            repeat: 1,
            timeout: Some(Duration::from_secs(1)),
        },
    )?;
    describe("null_read", &run);
    let line = run.trap_site.as_ref().and_then(|site| site.line.as_ref());
    ensure(
        matches!(run.report.outcome, Outcome::Trapped(trap) if trap.fault_addr == Some(0)),
        "null_read traps reading address 0",
    )?;
    ensure(
        line.is_some_and(|l| l.file == "null_read.bpf.c" && l.line == 10),
        "the trap names null_read.bpf.c:10",
    )?;
    ensure(!sandbox.is_poisoned(), "a trap does not poison the sandbox")?;

    // spin never returns: the deadline stops it. A stopped run leaves the
    // sandbox poisoned (the program was cut off anywhere) until a reset,
    // which keeps the loaded programs and their global data.
    let spin = sandbox.find_program("spin").ok_or("no program `spin`")?;
    let run = sandbox.run_program(
        spin,
        0,
        &ProgramInput {
            data: &[],
            repeat: 1,
            timeout: Some(Duration::from_millis(50)),
        },
    )?;
    describe("spin", &run);
    ensure(
        matches!(run.report.outcome, Outcome::DeadlineExceeded(_)),
        "spin is stopped at its deadline",
    )?;
    ensure(sandbox.is_poisoned(), "a stopped run poisons the sandbox")?;
    sandbox.reset()?;
    let run = sandbox.run_program(
        hello,
        0,
        &ProgramInput {
            data: &[],
            repeat: 1,
            timeout: Some(Duration::from_secs(1)),
        },
    )?;
    ensure(
        run.report.outcome == Outcome::Returned(42),
        "after a reset, hello runs again",
    )?;
    println!("after the reset, hello returned 42 again");
    Ok(())
}

/// Prints what a run produced and what it cost.
fn describe(name: &str, run: &ProgramRun) {
    let report = &run.report;
    match report.outcome {
        // r0 is the full 64-bit register; a C `int` is its low 32 bits.
        Outcome::Returned(r0) => println!("{name} returned {}", r0 as i32),
        Outcome::Trapped(trap) => {
            println!("{name} trapped: {trap}");
            if let Some(site) = &run.trap_site {
                println!("  at {site}");
            }
        }
        Outcome::DeadlineExceeded(budget) => {
            println!("{name} was stopped after its budget of {budget:?}")
        }
    }
    for line in &run.trace {
        println!("  trace: {line}");
    }
    if run.trace_dropped > 0 {
        println!("  ({} trace lines lost)", run.trace_dropped);
    }
    println!(
        "  {} run(s), {:?} ({} guest cycles), {} VM exit(s), {:?} wall; \
         arena pages {}, ring buffer drops {}",
        report.runs,
        report.duration,
        report.cycles,
        report.exits,
        report.wall,
        report.arena_pages,
        report.ringbuf_drops,
    );
}

/// FNV-1a 64 on the host, to check the guest's answer.
fn fnv1a_host(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An error saying which expectation failed, unless `ok`.
fn ensure(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("expected: {what}").into())
    }
}

/// Runs the example, or says why not. (`pub`: vmm/tests/examples.rs runs
/// it, with KVM and without.)
pub fn main() -> ExitCode {
    if !vmm::kvm::is_available() {
        println!("Skipped: /dev/kvm is not usable here, and bpfvisor needs KVM.");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
