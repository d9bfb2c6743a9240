//! Snapshots and clones in real VMs with clang-built samples: a clone
//! behaves as a fresh sandbox given the same history, clones are isolated
//! from each other and from their snapshot, and a reset takes a clone
//! (even a poisoned one) back to its snapshot.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use integration_tests::{kvm_available, run_returning, sandbox_with, stall_until_deadline};
use vmm::{Outcome, Sandbox, SnapshotError};

const GLOBALS: &[u8] = include_bytes!("../../images/progs/globals.bpf.o");
const WORDCOUNT: &[u8] = include_bytes!("../../images/progs/wordcount.bpf.o");
const RINGBUF: &[u8] = include_bytes!("../../images/progs/ringbuf.bpf.o");

fn text(s: &str) -> Vec<u8> {
    let mut ctx = (s.len() as u32).to_le_bytes().to_vec();
    ctx.extend(s.as_bytes());
    ctx.resize(4 + 4096, 0);
    ctx
}

fn word(w: &str) -> Vec<u8> {
    let mut key = w.as_bytes().to_vec();
    key.resize(16, 0);
    key
}

/// What the samples answer after the same history, as a comparable value:
/// globals' return values and trace lines, word counts.
fn history(sandbox: &Sandbox) -> (Vec<u64>, Vec<String>, Vec<u64>) {
    let mut returned = vec![];
    let mut trace = vec![];
    for x in [1u32, 2, 3] {
        let run = integration_tests::run_named(sandbox, "globals", 0, &x.to_le_bytes());
        let Outcome::Returned(r) = run.report.outcome else {
            panic!("{:?}", run.report.outcome)
        };
        returned.push(r);
        trace.extend(run.trace);
    }
    returned.push(run_returning(sandbox, "count_words", 0, &text("the cat and the hat")).0);
    let counts = ["the", "cat", "and", "dog"]
        .map(|w| run_returning(sandbox, "word_count", 0, &word(w)).0)
        .to_vec();
    (returned, trace, counts)
}

/// A sandbox with both samples and an initial history: the state a
/// snapshot is taken in.
fn initialised() -> Sandbox {
    let sandbox = sandbox_with(2, &[GLOBALS, WORDCOUNT]);
    run_returning(&sandbox, "globals", 0, &7u32.to_le_bytes());
    run_returning(&sandbox, "count_words", 1, &text("the end"));
    sandbox
}

#[test]
fn a_clone_answers_as_a_fresh_sandbox_with_the_same_history() {
    if !kvm_available("a_clone_answers_as_a_fresh_sandbox_with_the_same_history") {
        return;
    }
    let template = initialised();
    let snapshot = template.snapshot().unwrap();
    assert!(snapshot.bytes() > 0);
    let clone = snapshot.sandbox().unwrap();
    let fresh = initialised();
    let expected = history(&fresh);
    assert_eq!(history(&clone), expected);
    // The template goes on as it was, unaffected by the clone.
    assert_eq!(history(&template), expected);
    // A second clone starts from the snapshot, not from the first clone.
    let second = snapshot.sandbox().unwrap();
    assert_eq!(history(&second), expected);
    // Per-vCPU state works in clones: vCPU 1 runs too.
    assert_eq!(run_returning(&second, "count_words", 1, &text("x y")).0, 2);
}

#[test]
fn clones_do_not_see_each_others_writes() {
    if !kvm_available("clones_do_not_see_each_others_writes") {
        return;
    }
    let snapshot = initialised().snapshot().unwrap();
    let a = snapshot.sandbox().unwrap();
    let b = snapshot.sandbox().unwrap();
    for _ in 0..5 {
        run_returning(&a, "count_words", 0, &text("dog dog"));
    }
    assert_eq!(run_returning(&a, "word_count", 0, &word("dog")).0, 10);
    assert_eq!(run_returning(&b, "word_count", 0, &word("dog")).0, 0);
    let host_view = |s: &Sandbox| s.find_map("counts").unwrap().lookup(&word("dog")).unwrap();
    assert!(host_view(&a).is_some());
    assert_eq!(host_view(&b), None);
    // The host's writes to one clone's maps stay in that clone too.
    b.find_map("counts")
        .unwrap()
        .update(&word("cow"), &5u64.to_le_bytes(), 0)
        .unwrap();
    assert_eq!(run_returning(&b, "word_count", 0, &word("cow")).0, 5);
    assert_eq!(run_returning(&a, "word_count", 0, &word("cow")).0, 0);
}

#[test]
fn a_reset_takes_a_poisoned_clone_back_to_its_snapshot() {
    if !kvm_available("a_reset_takes_a_poisoned_clone_back_to_its_snapshot") {
        return;
    }
    let snapshot = sandbox_with(1, &[GLOBALS, WORDCOUNT, RINGBUF])
        .snapshot()
        .unwrap();
    let mut clone = snapshot.sandbox().unwrap();
    let before = run_returning(&clone, "globals", 0, &1u32.to_le_bytes()).0;
    run_returning(&clone, "count_words", 0, &text("a b c"));
    stall_until_deadline(&clone, 30);
    assert!(clone.is_poisoned());
    clone.reset().unwrap();
    assert!(!clone.is_poisoned());
    // The snapshot's state: the same first answer again, no words.
    assert_eq!(
        run_returning(&clone, "globals", 0, &1u32.to_le_bytes()).0,
        before
    );
    assert_eq!(run_returning(&clone, "word_count", 0, &word("a")).0, 0);
}

#[test]
fn a_clones_ring_buffer_reaches_its_own_consumer() {
    if !kvm_available("a_clones_ring_buffer_reaches_its_own_consumer") {
        return;
    }
    let template = sandbox_with(1, &[RINGBUF]);
    run_returning(&template, "fill", 0, &2u32.to_le_bytes());
    let snapshot = template.snapshot().unwrap();
    let a = snapshot.sandbox().unwrap();
    let b = snapshot.sandbox().unwrap();
    let mut ca = a.ring_buffer("events").unwrap();
    let mut cb = b.ring_buffer("events").unwrap();
    // Each starts with the snapshot's unconsumed records.
    let seqs = |c: &mut vmm::RingBufConsumer| {
        c.records()
            .map(|r| u32::from_le_bytes(r.unwrap()[..4].try_into().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&mut ca), [0, 1]);
    run_returning(&a, "fill", 0, &3u32.to_le_bytes());
    assert_eq!(seqs(&mut ca), [2, 3, 4]);
    assert_eq!(seqs(&mut cb), [0, 1], "b sees only its own records");
    run_returning(&b, "fill", 0, &1u32.to_le_bytes());
    assert_eq!(seqs(&mut cb), [2]);
    // The template's ring never saw the clones' records.
    let mut ct = template.ring_buffer("events").unwrap();
    assert_eq!(seqs(&mut ct), [0, 1]);
    // A reset keeps a clone's ring working (and its records).
    let mut a = a;
    drop(ca);
    a.reset().unwrap();
    let mut ca = a.ring_buffer("events").unwrap();
    run_returning(&a, "fill", 0, &1u32.to_le_bytes());
    assert_eq!(seqs(&mut ca).len(), 1);
}

#[test]
fn snapshots_refuse_what_they_cannot_copy() {
    if !kvm_available("snapshots_refuse_what_they_cannot_copy") {
        return;
    }
    let snapshot = sandbox_with(1, &[GLOBALS]).snapshot().unwrap();
    let clone = snapshot.sandbox().unwrap();
    assert!(matches!(clone.snapshot(), Err(SnapshotError::Clone)));
    let mut poisoned = sandbox_with(1, &[RINGBUF]);
    stall_until_deadline(&poisoned, 30);
    assert!(matches!(poisoned.snapshot(), Err(SnapshotError::Poisoned)));
    poisoned.reset().unwrap();
    assert!(poisoned.snapshot().is_ok());
}

#[test]
fn the_pool_hands_out_warm_clones_and_never_a_poisoned_one() {
    if !kvm_available("the_pool_hands_out_warm_clones_and_never_a_poisoned_one") {
        return;
    }
    use vmm::{Reuse, SandboxPool};
    let snapshot = std::sync::Arc::new(
        sandbox_with(1, &[GLOBALS, WORDCOUNT, RINGBUF])
            .snapshot()
            .unwrap(),
    );
    let pool = SandboxPool::new(snapshot.clone(), 2, 2, Reuse::ResetToSnapshot).unwrap();
    assert_eq!(pool.warm(), 2);
    let first = run_returning(&pool.get().unwrap(), "globals", 0, &1u32.to_le_bytes()).0;
    for round in 0..6 {
        let sandbox = pool.get().unwrap();
        assert!(!sandbox.is_poisoned());
        // Each borrower starts from the snapshot.
        assert_eq!(
            run_returning(&sandbox, "globals", 0, &1u32.to_le_bytes()).0,
            first,
            "round {round}"
        );
        assert_eq!(run_returning(&sandbox, "word_count", 0, &word("w")).0, 0);
        run_returning(&sandbox, "count_words", 0, &text("w w w"));
        if round % 2 == 0 {
            // Poisoned at a deadline, then given back.
            stall_until_deadline(&sandbox, 20);
        }
    }
    let stats = pool.stats();
    assert_eq!(stats.cold_clones, 0, "{stats:?}");
    assert_eq!(stats.discarded, 0, "{stats:?}");
    assert!(stats.resets >= 6, "{stats:?}");
    // Two borrowers at once, and a third needing a cold clone.
    let (a, b, c) = (
        pool.get().unwrap(),
        pool.get().unwrap(),
        pool.get().unwrap(),
    );
    assert_eq!(pool.stats().cold_clones, 1);
    drop((a, b, c));
    assert_eq!(pool.warm(), 2, "the pool keeps at most 2");

    // Keeping state: the next borrower sees the words, but a poisoned
    // sandbox still comes back reset.
    let keep = SandboxPool::new(snapshot, 1, 1, Reuse::KeepState).unwrap();
    {
        let sandbox = keep.get().unwrap();
        run_returning(&sandbox, "count_words", 0, &text("k k"));
    }
    {
        let sandbox = keep.get().unwrap();
        assert_eq!(run_returning(&sandbox, "word_count", 0, &word("k")).0, 2);
        stall_until_deadline(&sandbox, 20);
    }
    let sandbox = keep.get().unwrap();
    assert!(!sandbox.is_poisoned());
    assert_eq!(run_returning(&sandbox, "word_count", 0, &word("k")).0, 0);
}

#[test]
fn a_clone_loads_nothing_more() {
    if !kvm_available("a_clone_loads_nothing_more") {
        return;
    }
    // What it loaded would be gone at its next reset, which returns it to
    // the snapshot: refused, and the clone is unharmed.
    let snapshot = sandbox_with(1, &[GLOBALS]).snapshot().unwrap();
    let mut clone = snapshot.sandbox().unwrap();
    let object = guest_jit::elf::Object::parse(RINGBUF).unwrap();
    let err = clone
        .load_object(&object, vmm::HelperSet::Standard)
        .unwrap_err();
    assert!(matches!(err, vmm::LoadError::IntoClone), "{err}");
    assert!(clone.find_map("events").is_none());
    run_returning(&clone, "globals", 0, &1u32.to_le_bytes());
}

#[test]
fn a_refilled_pool_hands_out_warm_sandboxes_only() {
    if !kvm_available("a_refilled_pool_hands_out_warm_sandboxes_only") {
        return;
    }
    use std::sync::Arc;
    use vmm::{Reuse, SandboxPool};
    let snapshot = Arc::new(sandbox_with(1, &[WORDCOUNT]).snapshot().unwrap());
    let pool = Arc::new(SandboxPool::new(snapshot, 0, 2, Reuse::ResetToSnapshot).unwrap());
    let refiller = pool.refill_in_background().unwrap();
    let wait_warm = |n: usize| {
        let start = std::time::Instant::now();
        while pool.warm() < n {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "never refilled"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    };
    for _ in 0..3 {
        wait_warm(2);
        // Two held at once: both warm; the refiller makes two more.
        let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
        assert_eq!(run_returning(&a, "word_count", 0, &word("x")).0, 0);
        assert_eq!(run_returning(&b, "word_count", 0, &word("x")).0, 0);
        wait_warm(2);
        // Given back to a full pool: dropped, not kept.
        drop((a, b));
        assert_eq!(pool.warm(), 2);
    }
    assert_eq!(pool.stats().cold_clones, 0, "{:?}", pool.stats());
    assert_eq!(
        Arc::strong_count(&pool),
        3,
        "the test, the refiller, its thread"
    );
    drop(refiller);
    // The refill thread ended (joined) and let go of the pool.
    assert_eq!(Arc::strong_count(&pool), 1);
}
