//! Storage a program scribbled on: every operation ends, in bounded time,
//! with an error or a harmless result — never a hang, a panic or an
//! access outside the storage.

use super::{Fixture, keys, setup_map};
use crate::maps::hash::{Layout, hash_key};
use crate::maps::*;
use proptest::prelude::*;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `f` on another thread and fails the test if it does not return
/// within 20 seconds (a hang, not a benchmark: the operations below take
/// microseconds).
fn bounded<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        s.spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(20))
            .expect("operation did not return")
    })
}

/// Three keys in one bucket of a 16-bucket map.
fn same_bucket_keys(l: &Layout) -> [[u8; 4]; 3] {
    let bucket = |k: u32| hash_key(&k.to_le_bytes()) & (l.n_buckets - 1);
    let target = bucket(0);
    let mut found = (0..).filter(|&k| bucket(k) == target).map(u32::to_le_bytes);
    [
        found.next().unwrap(),
        found.next().unwrap(),
        found.next().unwrap(),
    ]
}

/// A HASH of 16 elements with keys `a` (element 0) and `b` (element 1,
/// chained before it) in one bucket, `c` absent from it; then element 0's
/// `next` pointed back at element 1: a cycle.
fn setup_cycle() -> (Fixture, Layout, [[u8; 4]; 3]) {
    let f = setup_map(MapType::Hash, 4, 8, 16, 1);
    let l = Layout::new(&f.def).unwrap();
    let [a, b, c] = same_bucket_keys(&l);
    let mem = f.mem();
    update(&f.def, &mem, &a, &[1; 8], BPF_ANY, 0).unwrap();
    update(&f.def, &mem, &b, &[2; 8], BPF_ANY, 0).unwrap();
    mem.store_u32(l.elems_off, 1).unwrap();
    (f, l, [a, b, c])
}

#[test]
fn a_chain_cycle_is_corrupt_for_every_operation() {
    let (f, _, [a, b, c]) = setup_cycle();
    let mem = f.mem().with_spin_tries(100);
    let (def, mem) = (&f.def, &mem);
    bounded(|| {
        assert_eq!(lookup(def, mem, &c, 0), Err(MapError::Corrupt));
        assert_eq!(lookup_sys(def, mem, &c), Err(MapError::Corrupt));
        assert_eq!(
            update(def, mem, &c, &[3; 8], BPF_ANY, 0),
            Err(MapError::Corrupt)
        );
        assert_eq!(delete(def, mem, &c), Err(MapError::Corrupt));
        assert_eq!(for_each(def, mem, 0, |_, _| true), Err(MapError::Corrupt));
        let mut out = [0; 4];
        assert_eq!(
            next_key(def, mem, Some(&a), &mut out),
            Err(MapError::Corrupt)
        );
        assert_eq!(
            next_key(def, mem, Some(&b), &mut out),
            Err(MapError::Corrupt)
        );
        // The host's iteration stops instead of going round.
        assert_eq!(keys(&f), Err(MapError::Corrupt));
        // Elements before the cycle are still found.
        assert!(lookup_sys(def, mem, &b).unwrap().is_some());
    });
    assert_eq!(MapError::Corrupt.errno(), crate::errno::EFAULT);
}

#[test]
fn indices_out_of_range_are_corrupt() {
    let (f, l, [a, _, c]) = setup_cycle();
    let mem = f.mem().with_spin_tries(100);
    let bucket = hash_key(&a) & (l.n_buckets - 1);
    mem.store_u32(l.buckets_off + bucket as usize * 8 + 4, 16)
        .unwrap();
    bounded(|| {
        assert_eq!(lookup(&f.def, &mem, &a, 0), Err(MapError::Corrupt));
        assert_eq!(
            update(&f.def, &mem, &c, &[0; 8], BPF_ANY, 0),
            Err(MapError::Corrupt)
        );
        assert_eq!(keys(&f), Err(MapError::Corrupt));
        assert_eq!(
            for_each(&f.def, &mem, 0, |_, _| true),
            Err(MapError::Corrupt)
        );
    });
}

#[test]
fn a_bad_free_list_never_hands_out_an_element_twice() {
    let f = setup_map(MapType::Hash, 4, 8, 4, 1);
    let mem = f.mem().with_spin_tries(100);
    let l = Layout::new(&f.def).unwrap();
    update(&f.def, &mem, &1u32.to_le_bytes(), &[1; 8], BPF_ANY, 0).unwrap();
    // The free list's head is element 0, which is in use.
    mem.store_u32(4, 0).unwrap();
    assert_eq!(
        update(&f.def, &mem, &2u32.to_le_bytes(), &[2; 8], BPF_ANY, 0),
        Err(MapError::Corrupt)
    );
    // Out of range.
    mem.store_u32(4, 99).unwrap();
    assert_eq!(
        update(&f.def, &mem, &2u32.to_le_bytes(), &[2; 8], BPF_ANY, 0),
        Err(MapError::Corrupt)
    );
    // A free element pointing at itself is handed out once.
    mem.store_u32(4, 1).unwrap();
    mem.store_u32(l.elems_off + l.elem_size + 8, 1).unwrap();
    update(&f.def, &mem, &2u32.to_le_bytes(), &[2; 8], BPF_ANY, 0).unwrap();
    assert_eq!(
        update(&f.def, &mem, &3u32.to_le_bytes(), &[3; 8], BPF_ANY, 0),
        Err(MapError::Corrupt)
    );
    assert_eq!(keys(&f).unwrap().len(), 2);
}

#[test]
fn a_stuck_bucket_lock_is_busy_for_writers_only() {
    let f = setup_map(MapType::Hash, 4, 8, 4, 1);
    let mem = f.mem().with_spin_tries(1000);
    let key = 5u32.to_le_bytes();
    update(&f.def, &mem, &key, &[1; 8], BPF_ANY, 0).unwrap();
    let l = Layout::new(&f.def).unwrap();
    let bucket = hash_key(&key) & (l.n_buckets - 1);
    mem.store_u32(l.buckets_off + bucket as usize * 8, lock::LOCKED)
        .unwrap();
    bounded(|| {
        assert_eq!(
            update(&f.def, &mem, &key, &[2; 8], BPF_ANY, 0),
            Err(MapError::Busy)
        );
        assert_eq!(delete(&f.def, &mem, &key), Err(MapError::Busy));
        assert!(lookup(&f.def, &mem, &key, 0).unwrap().is_some());
        assert_eq!(keys(&f).unwrap().len(), 1);
    });
    // The free-list lock too.
    mem.store_u32(0, 7).unwrap();
    let other = (0..)
        .map(u32::to_le_bytes)
        .find(|k| hash_key(k) & (l.n_buckets - 1) != bucket);
    let other = other.unwrap();
    assert_eq!(
        update(&f.def, &mem, &other, &[2; 8], BPF_ANY, 0),
        Err(MapError::Busy)
    );
}

#[test]
fn storage_smaller_than_its_definition_is_refused() {
    let f = setup_map(MapType::Hash, 4, 8, 4, 1);
    let short = &f.words[..f.words.len() - 1];
    let mem = StorageView::from_atomic(short, 0);
    assert_eq!(lookup(&f.def, &mem, &[0; 4], 0), Err(MapError::OutOfBounds));
    assert_eq!(init(&f.def, &mem), Err(MapError::OutOfBounds));
    let q = setup_map(MapType::Queue, 0, 4, 4, 1);
    let mem = StorageView::from_atomic(&q.words[..1], 0);
    assert_eq!(
        push(&q.def, &mem, &[0; 4], BPF_ANY),
        Err(MapError::OutOfBounds)
    );
}

fn any_type() -> impl Strategy<Value = MapType> {
    prop::sample::select(vec![
        MapType::Hash,
        MapType::PercpuHash,
        MapType::LruHash,
        MapType::LruPercpuHash,
        MapType::Queue,
        MapType::Stack,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Garbage written over a map's storage, then random operations: each
    /// returns (anything but a panic or a hang).
    #[test]
    fn garbage_storage_never_hangs_or_panics(
        ty in any_type(),
        fill in prop::collection::vec(any::<u64>(), 1..64),
        sparse in any::<bool>(),
        ops in prop::collection::vec((0..6u8, 0..8u32), 1..40),
    ) {
        let key_size = if matches!(ty, MapType::Queue | MapType::Stack) { 0 } else { 4 };
        let f = setup_map(ty, key_size, 8, 8, 2);
        for (i, w) in f.words.iter().enumerate() {
            // Sparse: a few words changed, so structures stay half valid.
            if !sparse || i % 7 == 3 {
                w.store(fill[i % fill.len()], std::sync::atomic::Ordering::Relaxed);
            }
        }
        let mem = f.mem().with_spin_tries(50);
        let (def, mem) = (&f.def, &mem);
        bounded(|| {
            for (op, k) in ops {
                let key = k.to_le_bytes();
                let key = &key[..key_size as usize];
                let mut out = [0u8; 8];
                let _ = match op {
                    0 => lookup(def, mem, key, k % 2).map(drop),
                    1 => update(def, mem, key, &[1; 8], u64::from(k % 3), k % 2),
                    2 => delete(def, mem, key),
                    3 => next_key(def, mem, Some(key), &mut out[..key_size as usize]),
                    4 => for_each(def, mem, 0, |_, _| true).map(drop),
                    _ => push(def, mem, &[1; 8], BPF_EXIST).and_then(|()| pop(def, mem, &mut out)),
                };
            }
            let _ = keys(&f);
            let mut listed = 0;
            let _ = queue_values(def, mem, |_| {
                listed += 1;
                Ok(())
            });
            assert!(listed <= def.max_entries());
        });
    }
}
