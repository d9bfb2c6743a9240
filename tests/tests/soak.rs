//! Soak: 100,000 invocations through a pool of clones — each borrowed
//! sandbox serves 100 of them (a hash map program and a ring buffer
//! producer whose records the host consumes) and goes back to the pool,
//! which resets it to the snapshot — leave the process's file
//! descriptors, threads and resident memory flat.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use integration_tests::{kvm_available, open_fds, run_returning, sandbox_with, threads};
use std::sync::Arc;
use vmm::{Reuse, SandboxPool};

const WORDCOUNT: &[u8] = include_bytes!("../../images/progs/wordcount.bpf.o");
const RINGBUF: &[u8] = include_bytes!("../../images/progs/ringbuf.bpf.o");

const INVOCATIONS: usize = 100_000;
const PER_BORROW: usize = 100;

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_hundred_thousand_invocations_leave_fds_threads_and_memory_flat() {
    if !kvm_available("a_hundred_thousand_invocations_leave_fds_threads_and_memory_flat") {
        return;
    }
    let snapshot = Arc::new(sandbox_with(1, &[WORDCOUNT, RINGBUF]).snapshot().unwrap());
    let pool = SandboxPool::new(snapshot, 2, 2, Reuse::ResetToSnapshot).unwrap();
    let mut text = 9u32.to_le_bytes().to_vec();
    text.extend(b"soak test");
    text.resize(4 + 4096, 0);
    let borrow = |round: usize| {
        let sandbox = pool.get().unwrap();
        let mut consumer = sandbox.ring_buffer("events").unwrap();
        for i in 0..PER_BORROW / 2 {
            let words = run_returning(&sandbox, "count_words", 0, &text).0;
            assert_eq!(words, 2, "round {round}, call {i}");
            let made = run_returning(&sandbox, "fill", 0, &1u32.to_le_bytes()).0;
            assert_eq!(made, 1);
            assert_eq!(consumer.consume(|_| {}).unwrap(), 1);
        }
    };
    let rounds = INVOCATIONS / PER_BORROW;
    // Warm up: allocator arenas, the page-table cache, the pool.
    for round in 0..rounds / 10 {
        borrow(round);
    }
    let (fds, tasks, rss) = (open_fds(), threads(), rss_kib());
    for round in rounds / 10..rounds {
        borrow(round);
    }
    assert_eq!(open_fds(), fds, "file descriptors");
    assert_eq!(threads(), tasks, "threads");
    let grown = rss_kib().saturating_sub(rss);
    assert!(grown < 8 * 1024, "resident memory grew by {grown} KiB");
    let stats = pool.stats();
    assert_eq!(stats.discarded, 0, "{stats:?}");
    assert_eq!(stats.resets as usize, rounds, "{stats:?}");
}
