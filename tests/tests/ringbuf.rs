//! Ring buffers in a real VM with the clang-built `ringbuf` sample: the
//! programs produce, the host's consumer reads the records in place
//! through its own double mapping of the ring.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::{kvm_available, run_returning, sandbox_with};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use vmm::{Outcome, ProgramInput, RingBufError, Sandbox};

const RINGBUF: &[u8] = include_bytes!("../../images/progs/ringbuf.bpf.o");
const RING_SIZE: u64 = 16 * 1024;

/// Global `name` of the sample, read through its section's map.
fn global(sandbox: &Sandbox, name: &str) -> Vec<u8> {
    let object = Object::parse(RINGBUF).unwrap();
    let var = object.variables().iter().find(|v| v.name == name).unwrap();
    let map = sandbox.find_map(&var.section).unwrap();
    let value = map.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
    value[var.offset as usize..(var.offset + var.size) as usize].to_vec()
}

fn global_u64(sandbox: &Sandbox, name: &str) -> u64 {
    u64::from_le_bytes(global(sandbox, name)[..8].try_into().unwrap())
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

/// Checks a record of the sample's format: header {seq, len, cpu}, then
/// byte j = (seq + j) & 0xff. Returns seq.
fn check_record(bytes: &[u8]) -> u32 {
    let (seq, len) = (u32_at(bytes, 0), u32_at(bytes, 4));
    assert_eq!(bytes.len(), len as usize, "record {seq}: length");
    for (j, b) in bytes[12..].iter().enumerate() {
        assert_eq!(*b, (seq as usize + j) as u8, "record {seq}: byte {j}");
    }
    seq
}

fn varied_len(seq: u32) -> u64 {
    12 + u64::from((seq * 37) % 300)
}

#[test]
fn records_of_varied_sizes_cross_the_end_intact_in_order_discards_skipped() {
    if !kvm_available("records_of_varied_sizes_cross_the_end_intact_in_order_discards_skipped") {
        return;
    }
    let sandbox = sandbox_with(1, &[RINGBUF]);
    let mut consumer = sandbox.ring_buffer("events").unwrap();
    assert_eq!(consumer.size(), RING_SIZE);
    let mut seen = vec![];
    let mut first = 0u32;
    for _ in 0..40 {
        let count = 50u32;
        let mut batch = [0u8; 8];
        batch[..4].copy_from_slice(&first.to_le_bytes());
        batch[4..].copy_from_slice(&count.to_le_bytes());
        let (sent, _) = run_returning(&sandbox, "varied", 0, &batch);
        let got = consumer
            .consume(|r| seen.push(check_record(&r.to_vec())))
            .unwrap();
        assert_eq!(got as u64, sent);
        first += count;
    }
    let expected: Vec<u32> = (0..first).filter(|s| s % 7 != 3).collect();
    assert_eq!(seen, expected, "in reservation order, discards skipped");
    assert_eq!(global_u64(&sandbox, "dropped"), 0);
    // The records crossed the end of the data many times, at every
    // alignment (their positions are the sum of the record sizes).
    let mut pos = 0u64;
    let mut crossings = 0;
    for seq in 0..first {
        let total = (varied_len(seq) + 8).next_multiple_of(8);
        if seq % 7 != 3 && pos % RING_SIZE + total > RING_SIZE {
            crossings += 1;
        }
        pos += total;
    }
    assert!(crossings >= 10, "only {crossings} records wrapped");
    assert_eq!(consumer.position(), pos);
    assert_eq!(consumer.available(), 0);
}

#[test]
fn a_full_ring_makes_reserve_fail_and_drops_match_what_did_not_arrive() {
    if !kvm_available("a_full_ring_makes_reserve_fail_and_drops_match_what_did_not_arrive") {
        return;
    }
    let sandbox = sandbox_with(1, &[RINGBUF]);
    let mut consumer = sandbox.ring_buffer("events").unwrap();
    let attempts = 1000u32;
    let (made, _) = run_returning(&sandbox, "fill", 0, &attempts.to_le_bytes());
    // 64-byte samples take 72 bytes: 227 fit in 16 KiB - 8.
    assert_eq!(made, 227);
    let mut arrived = vec![];
    consumer
        .consume(|r| arrived.push(check_record(&r.to_vec())))
        .unwrap();
    assert_eq!(arrived, (0..227).collect::<Vec<_>>());
    assert_eq!(global_u64(&sandbox, "produced"), arrived.len() as u64);
    assert_eq!(
        global_u64(&sandbox, "dropped"),
        u64::from(attempts) - arrived.len() as u64
    );
    // Room again once consumed; output fails with -EAGAIN the same way.
    let (copied, _) = run_returning(&sandbox, "output", 0, &300u32.to_le_bytes());
    assert_eq!(copied, 227);
    let n = consumer
        .consume(|r| assert_eq!(check_record(&r.to_vec()), u32_at(&r.to_vec(), 0)))
        .unwrap();
    assert_eq!(n, 227);
    assert_eq!(global_u64(&sandbox, "dropped"), 773 + 73);
}

#[test]
fn query_matches_the_hosts_view() {
    if !kvm_available("query_matches_the_hosts_view") {
        return;
    }
    let sandbox = sandbox_with(1, &[RINGBUF]);
    let mut consumer = sandbox.ring_buffer("events").unwrap();
    let queried = |s: &Sandbox| {
        run_returning(s, "query", 0, &[0; 8]);
        let raw = global(s, "queried");
        [0, 8, 16, 24].map(|o| u64::from_le_bytes(raw[o..o + 8].try_into().unwrap()))
    };
    assert_eq!(queried(&sandbox), [0, RING_SIZE, 0, 0]);
    run_returning(&sandbox, "fill", 0, &10u32.to_le_bytes());
    assert_eq!(queried(&sandbox), [720, RING_SIZE, 0, 720]);
    assert_eq!(consumer.available(), 720);
    consumer
        .consume_until(|_| std::ops::ControlFlow::Break(()))
        .unwrap();
    assert_eq!(consumer.position(), 72);
    assert_eq!(queried(&sandbox), [648, RING_SIZE, 72, 720]);
    assert_eq!(consumer.available(), 648);
}

#[test]
fn four_vcpus_produce_at_once_while_the_host_consumes_each_record_once() {
    if !kvm_available("four_vcpus_produce_at_once_while_the_host_consumes_each_record_once") {
        return;
    }
    const EACH: u32 = 20_000;
    let sandbox = sandbox_with(4, &[RINGBUF]);
    let mut consumer = sandbox.ring_buffer("events").unwrap();
    let done = AtomicBool::new(false);
    let mut next = [0u32; 4];
    let runs = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut next = [0u32; 4];
            loop {
                let finished = done.load(Ordering::SeqCst);
                consumer
                    .poll(Some(Duration::from_millis(5)), |r| {
                        let b = r.to_vec();
                        assert_eq!(b.len(), 16);
                        let (seq, cpu) = (u32_at(&b, 0), u32_at(&b, 4) as usize);
                        assert_eq!(u64::from_le_bytes(b[8..].try_into().unwrap()), 0x600d);
                        assert_eq!(seq, next[cpu], "cpu {cpu}: once each, in order");
                        next[cpu] += 1;
                    })
                    .unwrap();
                if finished && consumer.available() == 0 {
                    return (next, consumer.wakeups());
                }
            }
        });
        let runs = sandbox.run_program_on(
            sandbox.find_program("burst").unwrap(),
            &[0, 1, 2, 3],
            &ProgramInput {
                data: &EACH.to_le_bytes(),
                repeat: 1,
                timeout: Some(Duration::from_secs(60)),
            },
        );
        done.store(true, Ordering::SeqCst);
        // Wakeups (if the consumer slept at all: a polling consumer that
        // keeps up needs none) went to the ioeventfd: see exits below.
        let (got, _wakeups) = reader.join().unwrap();
        next = got;
        runs
    });
    let sent = global(&sandbox, "per_cpu_sent");
    for (cpu, run) in runs.into_iter().enumerate() {
        let run = run.unwrap();
        let Outcome::Returned(lost) = run.report.outcome else {
            panic!("cpu {cpu}: {:?}", run.report.outcome);
        };
        let sent = u64::from_le_bytes(sent[cpu * 8..cpu * 8 + 8].try_into().unwrap());
        assert_eq!(sent + lost, u64::from(EACH), "cpu {cpu}");
        assert_eq!(
            u64::from(next[cpu]),
            sent,
            "cpu {cpu}: every record arrived"
        );
        // Wakeups went to the ioeventfd, not the VMM: one exit per run.
        assert_eq!(run.report.exits, 1, "cpu {cpu}");
    }
}

#[test]
fn one_consumer_at_a_time_and_wrong_kinds_are_refused() {
    if !kvm_available("one_consumer_at_a_time_and_wrong_kinds_are_refused") {
        return;
    }
    let sandbox = sandbox_with(1, &[RINGBUF]);
    let first = sandbox.ring_buffer("events").unwrap();
    assert!(matches!(
        sandbox.ring_buffer("events"),
        Err(RingBufError::Attached(..))
    ));
    drop(first);
    let again = sandbox.ring_buffer("events").unwrap();
    assert!(matches!(
        sandbox.ring_buffer("nope"),
        Err(RingBufError::NotFound(_))
    ));
    assert!(matches!(
        sandbox.ring_buffer(".bss"),
        Err(RingBufError::WrongType { .. })
    ));
    assert!(matches!(
        sandbox.user_ring_buffer("events"),
        Err(RingBufError::WrongType { .. })
    ));
    // The map API has no element operations on a ring.
    let map = sandbox.find_map("events").unwrap();
    assert!(map.lookup(&[]).is_err());
    drop(again);
    let names: BTreeMap<_, _> = sandbox
        .ring_buffers()
        .map(|(_, name, t)| (name.to_owned(), t.name()))
        .collect();
    assert_eq!(names, BTreeMap::from([("events".into(), "RINGBUF")]));
}

#[test]
fn records_outlive_the_sandbox_and_a_reset_discards_abandoned_ones() {
    if !kvm_available("records_outlive_the_sandbox_and_a_reset_discards_abandoned_ones") {
        return;
    }
    let mut sandbox = sandbox_with(1, &[RINGBUF]);
    let mut consumer = sandbox.ring_buffer("events").unwrap();
    run_returning(&sandbox, "fill", 0, &3u32.to_le_bytes());
    // A run stopped at its deadline leaves a record reserved for good.
    integration_tests::stall_until_deadline(&sandbox, 50);
    assert_eq!(consumer.consume(|_| {}).unwrap(), 3);
    assert!(
        consumer.available() > 0,
        "the abandoned record blocks the way"
    );
    sandbox.reset().unwrap();
    run_returning(&sandbox, "fill", 0, &2u32.to_le_bytes());
    drop(sandbox);
    let seqs: Vec<u32> = consumer
        .records()
        .map(|r| check_record(&r.unwrap()))
        .collect();
    assert_eq!(seqs, vec![3, 4], "the abandoned record was discarded");
}

#[test]
fn poll_keeps_its_timeout_behind_a_record_never_committed() {
    if !kvm_available("poll_keeps_its_timeout_behind_a_record_never_committed") {
        return;
    }
    // What a program can leave: the producer position past a header that
    // stays busy. The consumer cannot move, but its poll still returns at
    // its timeout.
    let sandbox = sandbox_with(1, &[RINGBUF]);
    let header = sandbox.find_map("events").unwrap().info().header();
    let mut consumer = sandbox.ring_buffer("events").unwrap();
    sandbox
        .memory()
        .write(header + 0x3000, &(8u32 | (1 << 31)).to_le_bytes())
        .unwrap();
    sandbox
        .memory()
        .write(header + 0x2000, &16u64.to_le_bytes())
        .unwrap();
    for timeout in [0, 1, 20] {
        let start = std::time::Instant::now();
        let got = consumer
            .poll(Some(Duration::from_millis(timeout)), |_| {})
            .unwrap();
        assert_eq!(got, 0);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    assert_eq!(consumer.available(), 16);
}

/// Ends a reader thread when dropped, even if a run panics.
struct Done<'a>(&'a AtomicBool);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs `scribble` in `sandbox` (up to 20 times) while another thread
/// consumes its ring; returns the records read and the corruptions met.
/// Stops early when a run reserved nothing: its scribbles made the ring
/// look full for good (a reset keeps a sandbox's maps, rings included), so
/// nothing more would happen.
fn scribble_while_consuming(sandbox: &mut Sandbox) -> (u64, u64) {
    let mut consumer = sandbox.ring_buffer("events").unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut records, mut corrupt) = (0u64, 0u64);
            loop {
                let finished = done.load(Ordering::SeqCst);
                match consumer.poll(Some(Duration::from_millis(1)), |r| {
                    assert!(r.len() as u64 <= RING_SIZE);
                    let _ = r.to_vec();
                }) {
                    Ok(n) => records += n as u64,
                    Err(RingBufError::Corrupt { .. }) => corrupt += 1,
                    Err(e) => panic!("{e}"),
                }
                if finished {
                    // Whatever is left, consumed in bounded calls.
                    for _ in 0..64 {
                        match consumer.consume(|_| {}) {
                            Ok(0) => break,
                            Ok(n) => records += n as u64,
                            Err(_) => corrupt += 1,
                        }
                    }
                    return (records, corrupt);
                }
            }
        });
        let finished = Done(&done);
        let scribble = sandbox.find_program("scribble").unwrap();
        let rounds = 5000u32.to_le_bytes();
        for _ in 0..20 {
            let input = ProgramInput::new(&rounds).with_timeout(Duration::from_millis(100));
            let run = sandbox.run_program(scribble, 0, &input).unwrap();
            match run.report.outcome {
                Outcome::Returned(0) => break,
                Outcome::Returned(_) => {}
                // A scribbled lock word stalls the program's own reserves
                // (the kernel's would deadlock): a reset frees it.
                Outcome::DeadlineExceeded(_) => sandbox.reset().unwrap(),
                other => panic!("{other:?}"),
            }
        }
        drop(finished);
        reader.join().unwrap()
    })
}

#[test]
fn a_program_scribbling_over_its_ring_never_hurts_the_consumer() {
    if !kvm_available("a_program_scribbling_over_its_ring_never_hurts_the_consumer") {
        return;
    }
    // Whether random scribbles reach the consumer before they jam the
    // producer is chance (about one sandbox in ten jams first on a busy
    // host), so fresh sandboxes try until one's scribbles were noticed.
    let (mut records, mut corrupt) = (0, 0);
    for _ in 0..20 {
        let mut sandbox = sandbox_with(1, &[RINGBUF]);
        let (read, met) = scribble_while_consuming(&mut sandbox);
        records += read;
        corrupt += met;
        // Only the ring suffered: the sandbox still runs programs.
        assert_eq!(run_returning(&sandbox, "query", 0, &[0; 8]).0, 0);
        if corrupt > 0 {
            break;
        }
    }
    assert!(
        corrupt > 0,
        "the scribbles were noticed ({records} records)"
    );
}

const USER: &[u8] = include_bytes!("../../images/progs/user_ringbuf.bpf.o");

/// Request `seq` of the user_ringbuf sample: {seq, len, payload}.
fn request(seq: u32) -> Vec<u8> {
    let len = 8 + (seq * 29) % 240;
    let mut bytes = seq.to_le_bytes().to_vec();
    bytes.extend(len.to_le_bytes());
    bytes.extend((0..len - 8).map(|j| (seq * 3 + j) as u8));
    bytes
}

/// The response the sample gives to `request(seq)`: (seq, len, sum).
fn response(seq: u32) -> (u32, u32, u64) {
    let r = request(seq);
    (
        seq,
        r.len() as u32,
        r[8..].iter().map(|&b| u64::from(b)).sum(),
    )
}

fn serve(sandbox: &Sandbox, program: &str, limit: u32) -> i32 {
    run_returning(sandbox, program, 0, &limit.to_le_bytes()).0 as i32
}

fn host_requests_are_drained_in_order_and_answered(program: &str) {
    let sandbox = sandbox_with(1, &[USER]);
    let mut producer = sandbox.user_ring_buffer("requests").unwrap();
    let mut responses = sandbox.ring_buffer("responses").unwrap();
    let mut answered = vec![];
    let mut collect = |responses: &mut vmm::RingBufConsumer| {
        responses
            .consume(|r| {
                let b = r.to_vec();
                let sum = u64::from_le_bytes(b[8..16].try_into().unwrap());
                answered.push((u32_at(&b, 0), u32_at(&b, 4), sum));
            })
            .unwrap();
    };
    let (mut drained, mut discarded) = (0, 0);
    for seq in 0..400u32 {
        if seq % 13 == 5 {
            // Withdrawn before the program sees it.
            let mut withdrawn = loop {
                match producer.reserve(40) {
                    Ok(sample) => break sample,
                    Err(RingBufError::Full { .. }) => {
                        drained += serve(&sandbox, program, 0);
                        collect(&mut responses);
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            withdrawn.write(0, &[0xee; 40]);
            withdrawn.discard();
            discarded += 1;
        }
        loop {
            match producer.submit(&request(seq)) {
                Ok(()) => break,
                Err(RingBufError::Full { .. }) => {
                    drained += serve(&sandbox, program, 0);
                    collect(&mut responses);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    drained += serve(&sandbox, program, 0);
    collect(&mut responses);
    assert!(discarded > 0);
    assert_eq!(
        drained, 400,
        "the drains' counts leave discarded samples out"
    );
    assert_eq!(answered, (0..400).map(response).collect::<Vec<_>>());
    assert_eq!(global_of(&sandbox, USER, "served"), 400);
    assert_eq!(global_of(&sandbox, USER, "malformed"), 0);
    assert_eq!(global_of(&sandbox, USER, "unanswered"), 0);
    assert_eq!(producer.free(), 16 * 1024);
}

/// Global u64 `name` of `object`, loaded in `sandbox`.
fn global_of(sandbox: &Sandbox, object: &[u8], name: &str) -> u64 {
    let object = Object::parse(object).unwrap();
    let var = object.variables().iter().find(|v| v.name == name).unwrap();
    let value = sandbox
        .find_map(&var.section)
        .unwrap()
        .lookup(&0u32.to_le_bytes())
        .unwrap()
        .unwrap();
    u64::from_le_bytes(value[var.offset as usize..][..8].try_into().unwrap())
}

#[test]
fn host_requests_are_drained_in_order_and_answered_through_pointers() {
    if kvm_available("host_requests_are_drained_in_order_and_answered_through_pointers") {
        host_requests_are_drained_in_order_and_answered("serve");
    }
}

#[test]
fn host_requests_are_drained_in_order_and_answered_through_dynptrs() {
    if kvm_available("host_requests_are_drained_in_order_and_answered_through_dynptrs") {
        host_requests_are_drained_in_order_and_answered("serve_dynptr");
    }
}

#[test]
fn a_drain_stops_where_the_callback_says_and_resumes_there() {
    if !kvm_available("a_drain_stops_where_the_callback_says_and_resumes_there") {
        return;
    }
    let sandbox = sandbox_with(1, &[USER]);
    let mut producer = sandbox.user_ring_buffer("requests").unwrap();
    for seq in 0..10 {
        producer.submit(&request(seq)).unwrap();
    }
    assert_eq!(serve(&sandbox, "serve", 4), 4);
    assert_eq!(serve(&sandbox, "serve", 0), 6);
    assert_eq!(serve(&sandbox, "serve", 0), 0);
    let mut responses = sandbox.ring_buffer("responses").unwrap();
    let seqs: Vec<u32> = responses
        .records()
        .map(|r| u32_at(&r.unwrap(), 0))
        .collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
}

#[test]
fn garbage_in_a_user_ring_is_refused_on_both_sides() {
    if !kvm_available("garbage_in_a_user_ring_is_refused_on_both_sides") {
        return;
    }
    let sandbox = sandbox_with(1, &[USER]);
    let header = sandbox.find_map("requests").unwrap().info().header();
    let mut producer = sandbox.user_ring_buffer("requests").unwrap();
    producer.submit(&request(0)).unwrap();
    // What a hostile program could write: a consumer position beyond what
    // the host produced. The host refuses to produce over it.
    sandbox
        .memory()
        .write(header + 0x1000, &(1u64 << 40).to_le_bytes())
        .unwrap();
    assert!(matches!(
        producer.submit(&request(1)),
        Err(RingBufError::Corrupt { .. })
    ));
    // A producer position the program cannot trust: -EINVAL from the
    // drain, as the kernel's.
    sandbox
        .memory()
        .write(header + 0x1000, &0u64.to_le_bytes())
        .unwrap();
    sandbox
        .memory()
        .write(header + 0x2000, &13u64.to_le_bytes())
        .unwrap();
    assert_eq!(serve(&sandbox, "serve", 0), -22);
    // A sample longer than what was produced: -EINVAL too.
    sandbox
        .memory()
        .write(header + 0x2000, &16u64.to_le_bytes())
        .unwrap();
    sandbox
        .memory()
        .write(header + 0x3000, &4000u32.to_le_bytes())
        .unwrap();
    assert_eq!(serve(&sandbox, "serve", 0), -22);
    // The drain flag was left free: a good sample is served again.
    sandbox
        .memory()
        .write(header + 0x3000, &8u32.to_le_bytes())
        .unwrap();
    let empty_request = [7u32.to_le_bytes(), 8u32.to_le_bytes()].concat();
    sandbox
        .memory()
        .write(header + 0x3008, &empty_request)
        .unwrap();
    assert_eq!(serve(&sandbox, "serve", 0), 1);
    assert_eq!(global_of(&sandbox, USER, "served"), 1);
}

/// Waits up to `ms` for `fd` to be readable.
fn readable(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&raw mut pfd, 1, ms) > 0 }
}

#[test]
fn a_consumer_waiting_on_the_eventfd_itself_is_always_woken() {
    if !kvm_available("a_consumer_waiting_on_the_eventfd_itself_is_always_woken") {
        return;
    }
    // The kernel's rule alone (no poll): consume, then sleep on the
    // eventfd; every record must arrive without a timeout.
    let sandbox = sandbox_with(1, &[RINGBUF]);
    let mut consumer = sandbox.ring_buffer("events").unwrap();
    let runs = 200u32;
    let expected: u64 = (0..runs * 3).filter(|s| s % 7 != 3).count() as u64;
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut got = 0u64;
            while got < expected {
                got += consumer.consume(|_| {}).unwrap() as u64;
                if got < expected {
                    assert!(
                        readable(consumer.wakeup_fd(), 5000),
                        "no wakeup with {got} of {expected} records consumed"
                    );
                    let mut buf = [0u8; 8];
                    // SAFETY: reads 8 bytes into `buf`.
                    unsafe { libc::read(consumer.wakeup_fd(), buf.as_mut_ptr().cast(), 8) };
                }
            }
            got
        });
        for run in 0..runs {
            let mut batch = [0u8; 8];
            batch[..4].copy_from_slice(&(run * 3).to_le_bytes());
            batch[4..].copy_from_slice(&3u32.to_le_bytes());
            run_returning(&sandbox, "varied", 0, &batch);
            if run % 16 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(reader.join().unwrap(), expected);
    });
}

#[test]
fn a_host_producer_waiting_for_room_is_woken_by_the_drain() {
    if !kvm_available("a_host_producer_waiting_for_room_is_woken_by_the_drain") {
        return;
    }
    let sandbox = sandbox_with(1, &[USER]);
    let mut producer = sandbox.user_ring_buffer("requests").unwrap();
    let mut seq = 0;
    while producer.submit(&request(seq)).is_ok() {
        seq += 1;
    }
    assert!(!producer.wait_for_room(200, Some(Duration::ZERO)).unwrap());
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            serve(&sandbox, "serve", 0);
        });
        assert!(
            producer
                .wait_for_room(200, Some(Duration::from_secs(10)))
                .unwrap()
        );
    });
    assert_eq!(producer.free(), 16 * 1024);
    producer.submit(&request(seq)).unwrap();
}
