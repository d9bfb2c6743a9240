//! Threads standing in for vCPUs allocating and freeing at once, and for
//! the host releasing meanwhile.

use super::{Fixture, setup_arena};
use crate::arena::*;
use crate::maps::MapMemory;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;

const THREADS: u32 = 4;
const ROUNDS: u32 = 1500;

/// What thread `cpu` writes into the PTE slots of the pages it holds.
fn marker(cpu: u32, round: u32) -> u64 {
    0xc0de_0000_0000_0000 | u64::from(cpu) << 32 | u64::from(round)
}

/// Checks that every page of `r` still carries `mark` in its PTE slot:
/// no other thread was handed one of them.
fn check(f: &Fixture, r: PageRange, mark: u64) {
    for page in r.first..r.end() {
        assert_eq!(
            f.pte(page),
            mark,
            "page {page} of {r:?} was handed out twice"
        );
    }
}

/// One vCPU: allocates runs of 1-4 pages (some at a chosen page), marks
/// them, and frees them a few rounds later, checking the marks first.
fn vcpu(f: &Fixture, cpu: u32, stats: &AtomicU32) {
    let states = f.vcpu_states();
    let ptes = f.ptes();
    let mut held: Vec<(PageRange, u64)> = vec![];
    let mut seed = 0x9e37_79b9u32.wrapping_mul(cpu + 1);
    for round in 0..ROUNDS {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let count = 1 + seed % 4;
        let at = seed
            .is_multiple_of(8)
            .then(|| (seed >> 8) % (f.geom.npages() - count + 1));
        match alloc(&f.geom, &states, &ptes, count, at) {
            Ok(a) => {
                let r = PageRange {
                    first: a.first_page,
                    count: a.count,
                };
                let mark = marker(cpu, round);
                for page in r.first..r.end() {
                    assert_eq!(f.pte(page), f.geom.pte(page), "PTE of page {page}");
                    ptes.store_u64(8 * page as usize, mark).unwrap();
                }
                held.push((r, mark));
                stats.fetch_add(1, Ordering::Relaxed);
            }
            Err(ArenaError::NoSpace | ArenaError::RangeInUse) => {}
            Err(e) => panic!("alloc: {e}"),
        }
        if held.len() > 3 || (seed.is_multiple_of(3) && !held.is_empty()) {
            let (r, mark) = held.swap_remove(seed as usize % held.len());
            check(f, r, mark);
            assert_eq!(free(&f.geom, &states, &ptes, r.first, r.count), Ok(r.count));
        }
    }
    for (r, mark) in held {
        check(f, r, mark);
        assert_eq!(free(&f.geom, &states, &ptes, r.first, r.count), Ok(r.count));
    }
}

/// The host: release passes until the vCPUs are done; a busy lock is
/// tried again later.
fn host(f: &Fixture, done: &AtomicBool, released: &AtomicU32) {
    let states = f.states();
    let mut buf = [PageRange::default(); 4];
    while !done.load(Ordering::Acquire) {
        let mut from = Some(0);
        while let Some(at) = from {
            match take_freed_for_release(&f.geom, &states, at, &mut buf) {
                Ok(batch) => {
                    let taken = &buf[..batch.ranges];
                    // The "punch": only pages this pass took.
                    for r in taken {
                        assert!(r.end() <= f.geom.npages());
                    }
                    loop {
                        match finish_release(&f.geom, &states, taken) {
                            Ok(n) => {
                                released.fetch_add(n, Ordering::Relaxed);
                                break;
                            }
                            Err(ArenaError::Busy) => thread::yield_now(),
                            Err(e) => panic!("finish_release: {e}"),
                        }
                    }
                    from = batch.resume;
                }
                Err(ArenaError::Busy) => thread::yield_now(),
                Err(e) => panic!("take_freed_for_release: {e}"),
            }
        }
        thread::yield_now();
    }
}

/// Four vCPUs share a 48-page arena while the host releases: no page is
/// ever handed to two of them, and at the end every page is free again.
#[test]
fn no_page_is_handed_out_twice() {
    let f = setup_arena(48);
    let allocs = AtomicU32::new(0);
    let released = AtomicU32::new(0);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let host = s.spawn(|| host(&f, &done, &released));
        let vcpus: Vec<_> = (0..THREADS)
            .map(|cpu| {
                let (f, allocs) = (&f, &allocs);
                s.spawn(move || vcpu(f, cpu, allocs))
            })
            .collect();
        // Join every vCPU before judging, so that a failing one does not
        // leave the host looping.
        let results: Vec<_> = vcpus.into_iter().map(|v| v.join()).collect();
        done.store(true, Ordering::Release);
        host.join().unwrap();
        for r in results {
            r.unwrap();
        }
    });
    let total = allocs.load(Ordering::Relaxed);
    assert!(total > THREADS * ROUNDS / 4, "only {total} allocations");
    let last = f.release();
    assert!(
        released.load(Ordering::Relaxed) > 0,
        "the host never released anything"
    );
    assert!(f.bytes().iter().all(|&b| b == state::FREE), "{last:?}");
    assert!(f.ptes.iter().all(|p| p.load(Ordering::Relaxed) == 0));
    assert_eq!(f.header_u32(geometry::ALLOCATED_OFF), 0);
    assert_eq!(freed_hint(&f.states()), Ok(0));
}
