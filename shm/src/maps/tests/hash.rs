//! Hash maps pinned to the kernel's semantics.

use super::{Fixture, STORAGE_ADDR, keys, setup_map, setup_storage, value_u64};
use crate::errno;
use crate::maps::*;

fn k(n: u32) -> [u8; 4] {
    n.to_le_bytes()
}

fn v(n: u64) -> [u8; 8] {
    n.to_le_bytes()
}

fn get(f: &Fixture, key: u32, cpu: u32) -> Option<u64> {
    lookup(&f.def, &f.mem(), &k(key), cpu)
        .unwrap()
        .map(|off| value_u64(f, off))
}

#[test]
fn update_flags_and_delete_follow_the_kernel() {
    let f = setup_map(MapType::Hash, 4, 8, 2, 1);
    let (def, mem) = (&f.def, &f.mem());
    let err = |r: Result<(), MapError>| r.map_err(|e| e.errno());
    assert_eq!(
        err(update(def, mem, &k(1), &v(10), BPF_EXIST, 0)),
        Err(errno::ENOENT)
    );
    update(def, mem, &k(1), &v(10), BPF_NOEXIST, 0).unwrap();
    assert_eq!(
        err(update(def, mem, &k(1), &v(11), BPF_NOEXIST, 0)),
        Err(errno::EEXIST)
    );
    update(def, mem, &k(1), &v(12), BPF_EXIST, 0).unwrap();
    update(def, mem, &k(2), &v(20), BPF_ANY, 0).unwrap();
    assert_eq!(
        err(update(def, mem, &k(3), &v(30), BPF_ANY, 0)),
        Err(errno::E2BIG)
    );
    // A full map still updates existing keys.
    update(def, mem, &k(2), &v(21), BPF_ANY, 0).unwrap();
    assert_eq!(
        (get(&f, 1, 0), get(&f, 2, 0), get(&f, 3, 0)),
        (Some(12), Some(21), None)
    );
    delete(def, mem, &k(1)).unwrap();
    assert_eq!(err(delete(def, mem, &k(1))), Err(errno::ENOENT));
    update(def, mem, &k(3), &v(30), BPF_ANY, 0).unwrap();
    assert_eq!((get(&f, 1, 0), get(&f, 3, 0)), (None, Some(30)));
    assert_eq!(
        err(update(def, mem, &k(4), &v(0), 3, 0)),
        Err(errno::EINVAL)
    );
    assert_eq!(
        err(update(def, mem, &k(4), &v(0), BPF_F_LOCK, 0)),
        Err(errno::EINVAL)
    );
    assert_eq!(
        update(def, mem, &[0; 3], &v(0), BPF_ANY, 0),
        Err(MapError::InvalidArgument("key has the wrong size"))
    );
    assert!(update(def, mem, &k(4), &[0; 4], BPF_ANY, 0).is_err());
}

#[test]
fn lookup_returns_a_stable_guest_address_of_the_value() {
    let f = setup_map(MapType::Hash, 4, 8, 16, 1);
    let mem = f.mem();
    update(&f.def, &mem, &k(7), &v(70), BPF_ANY, 0).unwrap();
    let off = lookup(&f.def, &mem, &k(7), 0).unwrap().unwrap();
    assert_eq!(off % 8, 0);
    assert_eq!(mem.addr(off), STORAGE_ADDR + off as u64);
    // In place: updating keeps the address programs hold.
    update(&f.def, &mem, &k(7), &v(71), BPF_ANY, 0).unwrap();
    assert_eq!(lookup_sys(&f.def, &mem, &k(7)), Ok(Some(off)));
    assert_eq!(value_u64(&f, off), 71);
}

#[test]
fn next_key_visits_every_key_once_in_a_stable_order() {
    let f = setup_map(MapType::Hash, 4, 8, 50, 1);
    let mem = f.mem();
    for n in 0..40 {
        update(&f.def, &mem, &k(n * 7), &v(u64::from(n)), BPF_ANY, 0).unwrap();
    }
    let first = keys(&f).unwrap();
    let mut sorted: Vec<u32> = first
        .iter()
        .map(|b| u32::from_le_bytes(b[..].try_into().unwrap()))
        .collect();
    sorted.sort();
    assert_eq!(sorted, (0..40).map(|n| n * 7).collect::<Vec<_>>());
    assert_eq!(keys(&f).unwrap(), first);
    // A key not in the map restarts from the first, as the kernel.
    let mut out = [0; 4];
    next_key(&f.def, &mem, Some(&k(1)), &mut out).unwrap();
    assert_eq!(out[..], first[0][..]);
    let last = first.last().unwrap();
    assert_eq!(
        next_key(&f.def, &mem, Some(last), &mut out),
        Err(MapError::NotFound)
    );
    let empty = setup_map(MapType::Hash, 4, 8, 4, 1);
    assert_eq!(
        next_key(&empty.def, &empty.mem(), None, &mut out),
        Err(MapError::NotFound)
    );
}

#[test]
fn percpu_hash_keeps_one_value_per_cpu() {
    let f = setup_map(MapType::PercpuHash, 4, 8, 4, 3);
    let mem = f.mem();
    update(&f.def, &mem, &k(1), &v(5), BPF_ANY, 1).unwrap();
    assert_eq!(
        (get(&f, 1, 0), get(&f, 1, 1), get(&f, 1, 2)),
        (Some(0), Some(5), Some(0))
    );
    update(&f.def, &mem, &k(1), &v(6), BPF_ANY, 2).unwrap();
    assert_eq!((get(&f, 1, 1), get(&f, 1, 2)), (Some(5), Some(6)));
    let all: Vec<u8> = [7u64, 8, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
    update_sys(&f.def, &mem, &k(2), &all, BPF_ANY).unwrap();
    let off0 = lookup_sys(&f.def, &mem, &k(2)).unwrap().unwrap();
    let copies: Vec<u64> = (0..3)
        .map(|c| value_u64(&f, f.def.percpu_value_off(off0, c).unwrap()))
        .collect();
    assert_eq!(copies, [7, 8, 9]);
    let off2 = lookup_percpu(&f.def, &mem, &k(2), 2).unwrap().unwrap();
    assert_eq!(value_u64(&f, off2), 9);
    assert_eq!(lookup_percpu(&f.def, &mem, &k(2), 3), Ok(None));
    assert!(update_sys(&f.def, &mem, &k(2), &v(1), BPF_ANY).is_err());
    // The kernel refuses BPF_F_LOCK on per-CPU maps.
    assert_eq!(
        update(&f.def, &mem, &k(1), &v(1), BPF_F_LOCK, 0),
        Err(MapError::InvalidFlags)
    );
}

#[test]
fn hash_of_maps_holds_inner_header_addresses() {
    let f = setup_map(MapType::HashOfMaps, 4, 4, 4, 1);
    let mem = f.mem();
    assert_eq!(lookup_slot(&f.def, &mem, &k(3)), Ok(None));
    update_sys(&f.def, &mem, &k(3), &v(0x50_2000), BPF_NOEXIST).unwrap();
    assert_eq!(lookup_slot(&f.def, &mem, &k(3)), Ok(Some(0x50_2000)));
    assert!(update_sys(&f.def, &mem, &k(3), &[0; 4], BPF_ANY).is_err());
    assert_eq!(
        for_each(&f.def, &mem, 0, |_, _| true),
        Err(MapError::Unsupported)
    );
}

#[test]
fn spin_locked_values_update_under_their_lock() {
    let def = MapDef::new(MapType::Hash as u32, 4, 16, 4, 0, 1)
        .unwrap()
        .with_spin_lock(0)
        .unwrap();
    let f = setup_storage(def);
    let mem = f.mem().with_spin_tries(100);
    let value: Vec<u8> = (1..=16).collect();
    update(&f.def, &mem, &k(1), &value, BPF_ANY, 0).unwrap();
    let off = lookup(&f.def, &mem, &k(1), 0).unwrap().unwrap();
    assert_eq!(mem.load_u32(off), Ok(0), "the lock word is never copied");
    lock::lock(&mem, off).unwrap();
    assert_eq!(
        update(&f.def, &mem, &k(1), &value, BPF_F_LOCK, 0),
        Err(MapError::Busy)
    );
    lock::unlock(&mem, off).unwrap();
    update(&f.def, &mem, &k(1), &[0xaa; 16], BPF_F_LOCK | BPF_EXIST, 0).unwrap();
    let mut out = [0; 16];
    lock::read_value(&f.def, &mem, off, &mut out, BPF_F_LOCK).unwrap();
    assert_eq!(out[..4], [0; 4]);
    assert_eq!(out[4..], [0xaa; 12]);
}

#[test]
fn for_each_visits_every_element_and_may_delete_as_it_goes() {
    let f = setup_map(MapType::Hash, 4, 8, 32, 1);
    let mem = f.mem();
    for n in 0..20 {
        update(&f.def, &mem, &k(n), &v(u64::from(n)), BPF_ANY, 0).unwrap();
    }
    let mut sum = 0;
    let calls = for_each(&f.def, &mem, 0, |key, value| {
        sum += value_u64(&f, value);
        let EntryKey::At(key_off) = key else {
            panic!("hash keys are in the storage")
        };
        let mut key = [0; 4];
        mem.read(key_off, &mut key).unwrap();
        if u32::from_le_bytes(key) % 2 == 0 {
            delete(&f.def, &mem, &key).unwrap();
        }
        true
    });
    assert_eq!((calls, sum), (Ok(20), (0..20).sum()));
    assert_eq!(keys(&f).unwrap().len(), 10);
    assert_eq!(for_each(&f.def, &mem, 0, |_, _| false), Ok(1));
}

#[test]
fn rdonly_prog_maps_refuse_program_writes_only() {
    let def = MapDef::new(MapType::Hash as u32, 4, 8, 4, flags::RDONLY_PROG, 1).unwrap();
    let f = setup_storage(def);
    let mem = f.mem();
    assert_eq!(
        update(&f.def, &mem, &k(1), &v(1), BPF_ANY, 0).map_err(|e| e.errno()),
        Err(errno::EPERM)
    );
    update_sys(&f.def, &mem, &k(1), &v(1), BPF_ANY).unwrap();
    assert_eq!(delete(&f.def, &mem, &k(1)), Err(MapError::ReadOnly));
    delete_sys(&f.def, &mem, &k(1)).unwrap();
}

/// The `lru` sample's scenario (images/progs/lru.bpf.c): a strict LRU
/// keeps {1, 4, 5, 6}.
#[test]
fn lru_evicts_the_least_recently_used() {
    let f = setup_map(MapType::LruHash, 4, 8, 4, 2);
    let mem = f.mem();
    for n in 1..=6 {
        update(&f.def, &mem, &k(n), &v(u64::from(n) * 10), BPF_ANY, 0).unwrap();
        if n == 4 {
            assert!(lookup(&f.def, &mem, &k(1), 0).unwrap().is_some());
        }
    }
    let present: Vec<u32> = (1..=6)
        .filter(|&n| get(&f, n, 1) == Some(u64::from(n) * 10))
        .collect();
    assert_eq!(present, [1, 4, 5, 6]);
}

#[test]
fn lru_with_more_cpus_than_entries_still_evicts() {
    let f = setup_map(MapType::LruPercpuHash, 4, 8, 1, 4);
    let mem = f.mem();
    for n in 0..10 {
        update(&f.def, &mem, &k(n), &v(1), BPF_ANY, n % 4).unwrap();
        assert_eq!(keys(&f).unwrap(), [k(n).to_vec()]);
    }
    // NOEXIST on a present key is still -EEXIST, and EXIST on an absent
    // one -ENOENT: eviction only makes room.
    assert_eq!(
        update(&f.def, &mem, &k(9), &v(1), BPF_NOEXIST, 0),
        Err(MapError::Exists)
    );
    assert_eq!(
        update(&f.def, &mem, &k(1), &v(1), BPF_EXIST, 0),
        Err(MapError::NotFound)
    );
}

#[test]
fn lru_keeps_each_cpus_recent_element() {
    let f = setup_map(MapType::LruHash, 4, 8, 8, 2);
    let mem = f.mem();
    for n in 0..8 {
        update(&f.def, &mem, &k(n), &v(0), BPF_ANY, 0).unwrap();
    }
    // Every element referenced: CPU 1's lookup must still protect key 0.
    lookup(&f.def, &mem, &k(0), 1).unwrap().unwrap();
    for n in 100..104 {
        update(&f.def, &mem, &k(n), &v(0), BPF_ANY, 0).unwrap();
        assert!(
            lookup_sys(&f.def, &mem, &k(0)).unwrap().is_some(),
            "key 0 evicted by {n}"
        );
        assert!(lookup_sys(&f.def, &mem, &k(n)).unwrap().is_some());
    }
    assert_eq!(keys(&f).unwrap().len(), 8);
}
