//! Regions a program scribbled on: every operation ends, in bounded
//! time, with an error or a harmless result; the host's release changes
//! only FREED bytes below its own `npages`.

use super::{Fixture, PTES_ADDR, setup_arena};
use crate::arena::geometry::{CURSOR_OFF, HEADER_SIZE, LOCK_OFF};
use crate::arena::state::{FREE, FREED, RELEASING};
use crate::arena::*;
use crate::maps::MapMemory;
use crate::pod::read_pod;
use proptest::prelude::*;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Pages: the last word has 3 padding bytes.
const N: u32 = 45;

/// Runs `f` on another thread and fails the test if it does not return
/// within 20 seconds (a hang, not a benchmark).
fn bounded<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        s.spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(20))
            .expect("operation did not return")
    })
}

/// A state byte a program might leave: mostly real states, sometimes
/// anything.
fn state_byte() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 0..5u8, 1 => any::<u8>()]
}

/// Fills the state array, padding included, and the hint and counters.
fn scribble(f: &Fixture, bytes: &[u8], words: [u32; 3]) {
    let mem = f.states();
    mem.write(HEADER_SIZE, bytes).unwrap();
    mem.store_u32(CURSOR_OFF, words[0]).unwrap();
    mem.store_u32(geometry::ALLOCATED_OFF, words[1]).unwrap();
    mem.store_u32(geometry::FREED_OFF, words[2]).unwrap();
}

/// The whole state array, padding included.
fn all_bytes(f: &Fixture) -> Vec<u8> {
    let mut out = vec![0u8; f.geom.states_len()];
    f.states().read(HEADER_SIZE, &mut out).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The host's release over garbage: exactly the FREED bytes below
    /// `npages` go to RELEASING, listed in ranges inside the arena, then
    /// to FREE; nothing else changes, padding included.
    #[test]
    fn release_touches_only_freed_pages(
        bytes in prop::collection::vec(state_byte(), 48),
        words in any::<[u32; 3]>(),
    ) {
        let f = setup_arena(N);
        scribble(&f, &bytes, words);
        let before = all_bytes(&f);
        let mut buf = [PageRange::default(); 2];
        let mut from = Some(0);
        let mut listed = vec![];
        while let Some(at) = from {
            let batch = bounded(|| take_freed_for_release(&f.geom, &f.states(), at, &mut buf)).unwrap();
            prop_assert!(batch.resume.is_none_or(|r| r > at && r < N));
            listed.extend_from_slice(&buf[..batch.ranges]);
            from = batch.resume;
        }
        let mid = all_bytes(&f);
        for (p, (&b, &m)) in before.iter().zip(&mid).enumerate() {
            let in_listed = listed.iter().any(|r| r.contains(p as u32));
            prop_assert!(listed.iter().all(|r| r.count > 0 && r.end() <= N));
            if (p as u32) < N && b == FREED {
                prop_assert!(in_listed && m == RELEASING, "page {}", p);
            } else {
                prop_assert!(!in_listed && m == b, "page {}: {} -> {}", p, b, m);
            }
        }
        let released = finish_release(&f.geom, &f.states(), &listed).unwrap();
        prop_assert_eq!(released as usize, before[..N as usize].iter().filter(|&&b| b == FREED).count());
        for (p, (&m, &a)) in mid.iter().zip(&all_bytes(&f)).enumerate() {
            prop_assert_eq!(a, if m == RELEASING && (p as u32) < N && before[p] == FREED { FREE } else { m });
        }
    }

    /// Every operation over garbage states, hint and counters returns; an
    /// allocation takes only available pages below `npages`, and finds
    /// a run whenever one exists, whatever the hint says.
    #[test]
    fn operations_on_garbage_are_bounded_and_take_only_available_pages(
        bytes in prop::collection::vec(state_byte(), 48),
        words in any::<[u32; 3]>(),
        count in 1..6u32,
        at in prop::option::of(0..N),
        page in 0..N + 3,
    ) {
        let f = setup_arena(N);
        scribble(&f, &bytes, words);
        let before = all_bytes(&f);
        let avail = |p: u32| PageState::from_byte(before[p as usize]).is_available();
        let run_exists = (0..=N - count).any(|s| (s..s + count).all(avail));
        match bounded(|| f.alloc(count, at)) {
            Ok(a) => {
                prop_assert!(a.first_page + a.count <= N);
                prop_assert!((a.first_page..a.first_page + a.count).all(avail));
                for p in a.first_page..a.first_page + a.count {
                    let zero = a.needs_zeroing.as_slice().iter().any(|r| r.contains(p));
                    prop_assert_eq!(zero, before[p as usize] == FREED);
                }
            }
            Err(ArenaError::NoSpace) => prop_assert!(at.is_none() && !run_exists),
            Err(ArenaError::RangeInUse | ArenaError::InvalidArgument(_)) => prop_assert!(at.is_some()),
            Err(e) => prop_assert!(false, "{}", e),
        }
        let after = all_bytes(&f);
        prop_assert_eq!(&after[N as usize..], &before[N as usize..]);
        bounded(|| {
            let (g, s, p) = (&f.geom, &f.states(), &f.ptes());
            let _ = fault_in(g, s, p, page);
            let _ = is_allocated(g, s, page);
            let _ = reserve(g, s, page, count);
            let _ = free(g, s, p, page, count);
            let _ = alloc(g, s, p, N, None);
            let _ = freed_hint(s);
        });
        prop_assert_eq!(&all_bytes(&f)[N as usize..], &before[N as usize..]);
    }

    /// Any 64 bytes as a header: checked without a panic, and accepted
    /// only if they are exactly a header the host would write.
    #[test]
    fn garbage_headers_are_refused(bytes in prop::collection::vec(any::<u8>(), 64)) {
        let h: ArenaHeader = read_pod(&bytes).unwrap();
        if let Ok((geom, ptes)) = ArenaGeometry::from_header(&h) {
            let want = geom.header(ptes);
            prop_assert_eq!(ArenaHeader { lock: 0, cursor: 0, allocated: 0, freed: 0, reserved1: [0; 2], ..h }, want);
        }
    }
}

/// A valid header with random identity fields is rare: flip each bit of
/// a real one. Some flips describe another valid arena (a different base,
/// a page count with the same `states_len`), and those must be exactly
/// that arena's header; flips of the magic, the derived length, the
/// reserved word or an alignment bit never are.
#[test]
fn a_header_differing_in_any_identity_bit_is_checked() {
    let g = ArenaGeometry::new(N, super::GPA, super::VM).unwrap();
    let h = g.header(PTES_ADDR);
    let bytes = crate::pod::pod_bytes(&h).to_vec();
    let always_refused = |i: usize, bit: u32| {
        let low_bits = |field: usize, bits: usize| {
            (field..field + 8).contains(&i) && (i - field) * 8 + (bit as usize) < bits
        };
        i < 4 || (32..40).contains(&i) || low_bits(8, 12) || low_bits(16, 12) || low_bits(24, 3)
    };
    let mut refused = 0;
    for i in 0..LOCK_OFF {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let bad: ArenaHeader = read_pod(&b).unwrap();
            match ArenaGeometry::from_header(&bad) {
                Ok((geom, ptes)) => {
                    assert!(!always_refused(i, bit), "byte {i} bit {bit}");
                    assert_eq!(geom.header(ptes), bad);
                }
                Err(e) => {
                    assert_eq!(e, ArenaError::Corrupt);
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > 8 * 4 + 8 * 8 + 12 + 12 + 3, "{refused}");
}

/// A lock a program left taken, or garbage in it: the host gives up with
/// Busy after its short spin and changes nothing.
#[test]
fn a_lock_left_taken_makes_the_host_give_up() {
    let f = setup_arena(N);
    f.alloc(4, None).unwrap();
    f.free(0, 2);
    for word in [1, 0xdead_beef] {
        f.states().store_u32(LOCK_OFF, word).unwrap();
        let before = all_bytes(&f);
        let s = f.states().with_spin_tries(1000);
        let mut buf = [PageRange::default(); 2];
        bounded(|| {
            let (g, p) = (&f.geom, &f.ptes());
            assert_eq!(
                take_freed_for_release(g, &s, 0, &mut buf),
                Err(ArenaError::Busy)
            );
            assert_eq!(finish_release(g, &s, &buf), Err(ArenaError::Busy));
            assert_eq!(fault_in(g, &s, p, 9), Err(ArenaError::Busy));
            assert_eq!(alloc(g, &s, p, 1, None), Err(ArenaError::Busy));
            assert_eq!(free(g, &s, p, 2, 1), Err(ArenaError::Busy));
            // The lock-free check still answers.
            assert_eq!(is_allocated(g, &s, 2), Ok(true));
        });
        assert_eq!(all_bytes(&f), before);
        assert_eq!(f.states().load_u32(LOCK_OFF), Ok(word));
    }
}

/// A hint past the end or pointing at allocated pages costs a second
/// pass, never a failed allocation.
#[test]
fn a_wrong_hint_only_costs_time() {
    let f = setup_arena(N);
    f.alloc(10, None).unwrap();
    f.free(2, 3);
    for hint in [N, N + 1, u32::MAX, 40] {
        f.states().store_u32(CURSOR_OFF, hint).unwrap();
        let a = f.alloc(3, None).unwrap();
        assert!(a.first_page == 2 || a.first_page >= 10, "{hint}: {a:?}");
        f.free(a.first_page, 3);
    }
    // With an honest hint, first fit again.
    f.states().store_u32(CURSOR_OFF, 0).unwrap();
    assert_eq!(f.alloc(3, None).unwrap().first_page, 2);
}
