//! Snapshots, clones and a pool of warm sandboxes, as a serverless
//! platform runs them: load a function and initialise it once, freeze that
//! state, and serve each request in a copy-on-write clone of it that starts
//! exactly there, under limits the platform sets
//! (`images/progs/wordcount.bpf.c`, `images/progs/spin.bpf.c`).
//!
//! Run it with `cargo run -p vmm --example snapshot_clone`. It checks every
//! result against the samples' header comments and exits non-zero if one
//! differs.

use guest_jit::elf::Object;
use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use vmm::{
    HelperSet, Limits, Outcome, ProgramInput, Reuse, Sandbox, SandboxConfig, SandboxError,
    SandboxPool,
};

const WORDCOUNT: &[u8] = include_bytes!("../../images/progs/wordcount.bpf.o");
const SPIN: &[u8] = include_bytes!("../../images/progs/spin.bpf.o");

/// The longest any invocation may run, whatever its own timeout says.
const MAX_RUN_TIME: Duration = Duration::from_millis(200);

/// The example; an error if a result is not what the samples say.
fn run() -> Result<(), Box<dyn Error>> {
    // Limits are set when the sandbox is made, and its clones keep them.
    let config = SandboxConfig {
        cpus: 1,
        limits: Limits {
            max_run_time: Some(MAX_RUN_TIME),
            max_memory: Some(256 << 20),
            ..Limits::default()
        },
        ..SandboxConfig::default()
    };
    let mut template = Sandbox::new(config)?;
    println!(
        "template: {} MiB of guest memory (sparse: only pages in use cost)",
        template.layout().memory_size() >> 20
    );
    // A limit the configuration cannot meet is an error up front.
    let too_small = SandboxConfig {
        limits: Limits {
            max_memory: Some(1 << 20),
            ..Limits::default()
        },
        ..config
    };
    match Sandbox::new(too_small) {
        Err(e @ SandboxError::Limit { .. }) => println!("a 1 MiB limit: {e}"),
        other => return Err(format!("expected a limit error, got {other:?}").into()),
    }

    // Load the function and initialise it: the word counts of a first text
    // are the state every request starts from.
    for bytes in [WORDCOUNT, SPIN] {
        template.load_object(&Object::parse(bytes)?, HelperSet::Standard)?;
    }
    let words = count_words(&template, "the cat and the hat and the bat")?;
    ensure(words == 8, "the initial text has 8 words")?;
    ensure(word_count(&template, "the")? == 3, "the template has the=3")?;

    // Freeze it. The snapshot holds a copy of the memory in use; clones map
    // it copy-on-write.
    let snapshot = template.snapshot()?;
    println!("snapshot: {} KiB of guest memory", snapshot.bytes() >> 10);

    // Two clones: each starts from the snapshot and is isolated from the
    // other, from the template and from the snapshot.
    let a = snapshot.sandbox()?;
    let b = snapshot.sandbox()?;
    count_words(&a, "the end")?;
    ensure(word_count(&a, "the")? == 4, "clone a counts its own text")?;
    ensure(
        word_count(&b, "the")? == 3,
        "clone b does not see a's words",
    )?;
    ensure(
        word_count(&template, "the")? == 3,
        "the template does not see a's words",
    )?;
    drop((a, b));

    // A pool keeps warm clones ready (2 now, up to 4) and resets each one
    // to the snapshot when it comes back, so every request starts from the
    // same state. `SandboxPool` is `Sync`: request threads share it.
    let pool = SandboxPool::new(Arc::new(snapshot), 2, 4, Reuse::ResetToSnapshot)?;
    let requests = [
        "the quick brown fox",
        "jumps over the lazy dog and the cat",
        "no articles here",
        "the the the",
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|&text| {
                let pool = &pool;
                s.spawn(move || -> Result<(), String> {
                    let sandbox = pool.get().map_err(|e| e.to_string())?;
                    count_words(&sandbox, text).map_err(|e| e.to_string())?;
                    let the = word_count(&sandbox, "the").map_err(|e| e.to_string())?;
                    let in_request = text.split(' ').filter(|&w| w == "the").count() as u64;
                    println!("request {text:?}: the={the}");
                    if the != 3 + in_request {
                        return Err(format!("{text:?}: the={the}, not {}", 3 + in_request));
                    }
                    Ok(())
                    // `sandbox` goes back to the pool here.
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| "a request thread panicked".to_owned())?
        })
    })?;

    // A request that never returns is cut at the sandbox's max_run_time,
    // even without a timeout of its own; the clone is poisoned, and the
    // pool resets it when it comes back.
    {
        let sandbox = pool.get()?;
        let spin = sandbox.find_program("spin").ok_or("no program `spin`")?;
        let run = sandbox.run_program(
            spin,
            0,
            &ProgramInput {
                data: &[],
                repeat: 1,
                timeout: None,
            },
        )?;
        println!("spin: {:?} after {:?}", run.report.outcome, run.report.wall);
        ensure(
            run.report.outcome == Outcome::DeadlineExceeded(MAX_RUN_TIME),
            "spin is stopped at max_run_time",
        )?;
        ensure(sandbox.is_poisoned(), "a stopped clone is poisoned")?;
    }
    for _ in 0..4 {
        let sandbox = pool.get()?;
        ensure(!sandbox.is_poisoned(), "the pool never hands out poison")?;
        ensure(
            word_count(&sandbox, "the")? == 3,
            "every borrower starts from the snapshot",
        )?;
    }
    let stats = pool.stats();
    println!(
        "pool: {} warm hits, {} cold clones, {} resets, {} discarded, {} warm now",
        stats.warm_hits,
        stats.cold_clones,
        stats.resets,
        stats.discarded,
        pool.warm()
    );
    ensure(stats.discarded == 0, "no reset failed")?;
    Ok(())
}

/// Runs wordcount's `count_words` on `text` (`struct text`: a u32 length,
/// then up to 4096 bytes); the number of words.
fn count_words(sandbox: &Sandbox, text: &str) -> Result<u64, Box<dyn Error>> {
    let mut ctx = (text.len() as u32).to_le_bytes().to_vec();
    ctx.extend(text.as_bytes());
    ctx.resize(4 + 4096, 0);
    run_returning(sandbox, "count_words", &ctx)
}

/// `word`'s count, read by the program `word_count` (the host could read
/// the `counts` map itself: see [`vmm::MapHandle::lookup`]).
fn word_count(sandbox: &Sandbox, word: &str) -> Result<u64, Box<dyn Error>> {
    let mut key = word.as_bytes().to_vec();
    key.resize(16, 0);
    let from_program = run_returning(sandbox, "word_count", &key)?;
    let counts = sandbox.find_map("counts").ok_or("no map `counts`")?;
    let from_host = match counts.lookup(&key)? {
        Some(value) => u64::from_le_bytes(value.as_slice().try_into()?),
        None => 0,
    };
    ensure(from_program == from_host, "host and program agree")?;
    Ok(from_program)
}

fn run_returning(sandbox: &Sandbox, name: &str, ctx: &[u8]) -> Result<u64, Box<dyn Error>> {
    let id = sandbox
        .find_program(name)
        .ok_or_else(|| format!("no program `{name}`"))?;
    let input = ProgramInput {
        data: ctx,
        repeat: 1,
        timeout: Some(Duration::from_secs(1)),
    };
    match sandbox.run_program(id, 0, &input)?.report.outcome {
        Outcome::Returned(r0) => Ok(r0),
        other => Err(format!("{name}: {other:?}").into()),
    }
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
