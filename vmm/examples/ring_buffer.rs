//! Ring buffers between programs and the host:
//!
//! 1. A `RINGBUF` consumed on its own thread while programs produce into
//!    it, records read in place (`images/progs/ringbuf.bpf.c`).
//! 2. Several rings polled together with a callback each, and what the
//!    host does when a hostile program scribbles over a ring
//!    (`images/progs/ringbuf_hello.bpf.c`).
//! 3. Requests in through a `USER_RINGBUF`, responses out through a
//!    `RINGBUF`: one invocation serves a whole batch
//!    (`images/progs/user_ringbuf.bpf.c`).
//!
//! Run it with `cargo run -p vmm --example ring_buffer`. It checks every
//! result against the samples' header comments and exits non-zero if one
//! differs.

use guest_jit::elf::Object;
use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, RingBufError, RingBufPoller, Sandbox, SandboxConfig};

const RINGBUF: &[u8] = include_bytes!("../../images/progs/ringbuf.bpf.o");
const RINGBUF_HELLO: &[u8] = include_bytes!("../../images/progs/ringbuf_hello.bpf.o");
const USER_RINGBUF: &[u8] = include_bytes!("../../images/progs/user_ringbuf.bpf.o");

/// The header of every record of ringbuf.bpf.c's `events`: `struct rec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Rec {
    seq: u32,
    len: u32,
    cpu: u32,
}

// SAFETY: `#[repr(C)]`, three u32 and no padding; any bytes are a valid
// (if meaningless) `Rec`, which is all the host may assume of bytes a
// program wrote.
unsafe impl shm::pod::Pod for Rec {}

/// The example; an error if a result is not what the samples say.
fn run() -> Result<(), Box<dyn Error>> {
    consume_on_another_thread()?;
    poll_several_rings()?;
    requests_and_responses()?;
    Ok(())
}

/// Part 1: `varied` produces batches of records of varied lengths on vCPU
/// 0 while a consumer thread follows the ring.
fn consume_on_another_thread() -> Result<(), Box<dyn Error>> {
    let sandbox = sandbox_with(RINGBUF)?;
    let varied = sandbox
        .find_program("varied")
        .ok_or("no program `varied`")?;
    // The host's end of `events`. It is `Send`: it moves to the consumer
    // thread, and may even outlive the sandbox to read the last records.
    let mut events = sandbox.ring_buffer("events")?;
    let producing = &AtomicBool::new(true);
    const BATCHES: u32 = 200;
    const PER_BATCH: u32 = 50;

    let (received, sent, drops) = std::thread::scope(|s| {
        let consumer = s.spawn(move || -> Result<Vec<u32>, Box<dyn Error + Send + Sync>> {
            let mut seqs = Vec::new();
            let mut bad = None;
            let mut check = |record: &vmm::Record<'_>| {
                // Read the header in place, and of the payload just its
                // last byte: no copy of the record is made. A record is
                // the guest's memory: check what it says.
                let Some(rec) = record.read_pod::<Rec>(0) else {
                    bad = Some("a record shorter than its header".to_owned());
                    return;
                };
                // Payload byte j is (seq + j) & 0xff; check the last one.
                let payload_ok = match record.len().checked_sub(size_of::<Rec>() + 1) {
                    None => true,
                    Some(j) => {
                        let want = (rec.seq as usize).wrapping_add(j) as u8;
                        record.read_pod::<u8>(size_of::<Rec>() + j) == Some(want)
                    }
                };
                // Arithmetic on guest-written numbers must not overflow.
                let want_len = 12 + rec.seq.wrapping_mul(37) % 300;
                if rec.len as usize != record.len()
                    || rec.len != want_len
                    || rec.seq % 7 == 3
                    || !payload_ok
                {
                    bad = Some(format!("record {rec:?} is not what varied writes"));
                }
                seqs.push(rec.seq);
            };
            // Wait for records while the producer runs; once it is done,
            // take what is left. `poll` tells producers the consumer is
            // awake, so their commits cost no wakeup.
            loop {
                let done = !producing.load(Ordering::Acquire);
                events.poll(Some(Duration::from_millis(100)), &mut check)?;
                if done {
                    events.consume(&mut check)?;
                    break;
                }
            }
            match bad {
                Some(what) => Err(what.into()),
                None => Ok(seqs),
            }
        });

        let mut sent = 0;
        let mut drops = 0;
        for batch in 0..BATCHES {
            // struct batch { first, count }
            let mut ctx = (batch * PER_BATCH).to_le_bytes().to_vec();
            ctx.extend(PER_BATCH.to_le_bytes());
            let run = sandbox.run_program(
                varied,
                0,
                &ProgramInput {
                    data: &ctx,
                    repeat: 1,
                    timeout: Some(Duration::from_secs(5)),
                },
            );
            match run.map(|r| (r.report.outcome, r.report.ringbuf_drops)) {
                Ok((Outcome::Returned(n), batch_drops)) => {
                    sent += n;
                    // Reserves that found the ring full: the consumer fell
                    // behind this batch.
                    drops += batch_drops;
                }
                other => {
                    producing.store(false, Ordering::Release);
                    return Err(format!("varied: {other:?}").into());
                }
            }
        }
        producing.store(false, Ordering::Release);
        let received = consumer
            .join()
            .map_err(|_| "the consumer thread panicked")?
            .map_err(|e| e.to_string())?;
        Ok::<_, Box<dyn Error>>((received, sent, drops))
    })?;

    println!(
        "events: {} records received, {sent} submitted, {drops} dropped on a full ring",
        received.len()
    );
    ensure(
        received.len() as u64 == sent,
        "every submitted record arrives",
    )?;
    ensure(
        received.windows(2).all(|w| w[0] < w[1]),
        "records arrive in the order they were reserved",
    )?;
    // The program counts failed reserves in its global `dropped` too: the
    // host reads globals through the map of their section.
    ensure(
        global_u64(&sandbox, RINGBUF, "dropped")? == drops,
        "the reports' drops are the program's own count",
    )?;
    Ok(())
}

/// Part 2: one poller over `events` and `logs`, each with its callback.
fn poll_several_rings() -> Result<(), Box<dyn Error>> {
    let sandbox = sandbox_with(RINGBUF_HELLO)?;
    // Callbacks must be `Send`: a channel is a simple way out of them.
    let (tx, rx) = mpsc::channel();
    let logs_tx = tx.clone();
    let mut poller = RingBufPoller::new()?;
    poller.add(sandbox.ring_buffer("events")?, move |r| {
        let _ = tx.send(("events", r.to_vec()));
    })?;
    poller.add(sandbox.ring_buffer("logs")?, move |r| {
        let _ = logs_tx.send(("logs", r.to_vec()));
    })?;

    // hello: three records in `events`.
    run_returning(&sandbox, "hello", &[])?;
    let n = poller.poll(Some(Duration::from_secs(1)))?;
    let got: Vec<_> = rx.try_iter().collect();
    println!("hello: {n} records: {}", show(&got));
    ensure(
        got == [
            ("events", b"hello".to_vec()),
            ("events", b"ring".to_vec()),
            ("events", b"buffer".to_vec()),
        ],
        "hello submits hello, ring, buffer to events",
    )?;

    // corrupt: a hostile program overwrites a record's length. The poller
    // reports the broken ring once, skips past the damage, and the other
    // ring is consumed all the same.
    run_returning(&sandbox, "corrupt", &[])?;
    let result = poller.poll(Some(Duration::from_secs(1)));
    let got: Vec<_> = rx.try_iter().collect();
    println!("corrupt: {}", show(&got));
    match &result {
        Err(e @ RingBufError::Corrupt { ring, .. }) if ring == "events" => {
            println!("  error, as expected: {e}");
        }
        other => return Err(format!("corrupt: expected a corrupt `events`, got {other:?}").into()),
    }
    ensure(
        got.contains(&("events", b"ok".to_vec())) && got.contains(&("logs", b"intact".to_vec())),
        "the records before the damage and the other ring's arrive",
    )?;
    // The ring works again from the producer's position on. (The
    // program's own next reserve walks over the damaged record and fails:
    // only the program that scribbled loses records. `count` skips a
    // failed reserve and returns how many it submitted.)
    let mut span = 100u32.to_le_bytes().to_vec(); // first
    span.extend(5u32.to_le_bytes()); // count
    let submitted = run_returning(&sandbox, "count", &span)?;
    poller.poll(Some(Duration::from_secs(1)))?;
    let got: Vec<_> = rx.try_iter().collect();
    println!("count: {submitted} of 5 records submitted after the damage");
    ensure(
        submitted >= 4 && got.len() as u64 == submitted,
        "events works after the damage",
    )?;
    Ok(())
}

/// Part 3: the host submits requests to `requests`; one run of `serve`
/// drains them all and answers each in `responses`.
fn requests_and_responses() -> Result<(), Box<dyn Error>> {
    let sandbox = sandbox_with(USER_RINGBUF)?;
    let mut requests = sandbox.user_ring_buffer("requests")?;
    let mut responses = sandbox.ring_buffer("responses")?;

    let bodies: [&[u8]; 3] = [b"resize 640x480", b"thumbnail", b"crop 10,10,100,100"];
    for (seq, body) in bodies.iter().enumerate() {
        // A request: {u32 seq; u32 len; payload}, len counting the header.
        let len = 8 + body.len();
        let mut request = requests.reserve(len)?;
        request.write(0, &(seq as u32).to_le_bytes());
        request.write(4, &(len as u32).to_le_bytes());
        request.write(8, body);
        request.submit();
    }
    // `submit` copies a whole sample in one call; a full ring is an error
    // (`RingBufError::Full`) to retry after the program drained it
    // (`wait_for_room` waits for that).
    let bad_request = 0xdead_u32.to_le_bytes();
    requests.submit(&bad_request)?;

    // limit 0: drain every request. The result is the drain's: samples
    // consumed (the malformed one included).
    let drained = run_returning(&sandbox, "serve", &0u32.to_le_bytes())?;
    println!("serve drained {drained} requests");
    ensure(drained == 4, "serve drains the four requests")?;

    let mut answers = Vec::new();
    responses.consume(|r| {
        // {u32 seq; u32 len; u64 sum}
        if let (Some(seq), Some(len), Some(sum)) = (
            r.read_pod::<u32>(0),
            r.read_pod::<u32>(4),
            r.read_pod::<u64>(8),
        ) {
            answers.push((seq, len, sum));
        }
    })?;
    for &(seq, len, sum) in &answers {
        println!("  response {seq}: {len} bytes, payload sum {sum}");
    }
    let expected: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(seq, body)| {
            let sum = body.iter().map(|&b| u64::from(b)).sum();
            (seq as u32, 8 + body.len() as u32, sum)
        })
        .collect();
    ensure(answers == expected, "each request gets its sum back")?;
    ensure(
        global_u64(&sandbox, USER_RINGBUF, "malformed")? == 1,
        "the 4-byte request is counted malformed",
    )?;
    Ok(())
}

/// A one-vCPU sandbox with `object` loaded.
fn sandbox_with(object: &[u8]) -> Result<Sandbox, Box<dyn Error>> {
    let mut sandbox = Sandbox::new(SandboxConfig::default())?;
    sandbox.load_object(&Object::parse(object)?, HelperSet::Standard)?;
    Ok(sandbox)
}

/// Runs program `name` on vCPU 0 with `ctx`; its return value.
fn run_returning(sandbox: &Sandbox, name: &str, ctx: &[u8]) -> Result<u64, Box<dyn Error>> {
    let id = sandbox
        .find_program(name)
        .ok_or_else(|| format!("no program `{name}`"))?;
    let input = ProgramInput {
        data: ctx,
        repeat: 1,
        timeout: Some(Duration::from_secs(5)),
    };
    match sandbox.run_program(id, 0, &input)?.report.outcome {
        Outcome::Returned(r0) => Ok(r0),
        other => Err(format!("{name}: {other:?}").into()),
    }
}

/// The u64 global `name` of `object`, loaded in `sandbox`: globals live in
/// the single value of their section's map (`.bss`, `.data`, ...).
fn global_u64(sandbox: &Sandbox, object: &[u8], name: &str) -> Result<u64, Box<dyn Error>> {
    let object = Object::parse(object)?;
    let var = object
        .variables()
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| format!("no global `{name}`"))?;
    let map = sandbox
        .find_map(&var.section)
        .ok_or_else(|| format!("no map `{}`", var.section))?;
    let value = map.lookup(&0u32.to_le_bytes())?.ok_or("empty section")?;
    let bytes = value
        .get(var.offset as usize..var.offset as usize + 8)
        .ok_or("global outside its section")?;
    Ok(u64::from_le_bytes(bytes.try_into()?))
}

fn show(records: &[(&str, Vec<u8>)]) -> String {
    let shown: Vec<String> = records
        .iter()
        .map(|(ring, bytes)| format!("{ring}: {:?}", String::from_utf8_lossy(bytes)))
        .collect();
    shown.join(", ")
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
