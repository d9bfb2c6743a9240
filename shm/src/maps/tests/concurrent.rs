//! Threads standing in for vCPUs, all on one map at once.

use super::{Fixture, keys, setup_map, value_u64};
use crate::maps::*;
use std::thread;

const THREADS: u32 = 4;

/// Runs `f(cpu)` on [`THREADS`] threads at once.
fn on_cpus(f: impl Fn(u32) + Sync) {
    thread::scope(|s| {
        for cpu in 0..THREADS {
            let f = &f;
            s.spawn(move || f(cpu));
        }
    });
}

/// Adds 1 to the u64 at `off` as a program's `__sync_fetch_and_add` does.
fn atomic_add(f: &Fixture, off: usize) {
    let mem = f.mem();
    loop {
        let old = mem.load_u64(off).unwrap();
        if mem.cas_u64(off, old, old + 1).unwrap().is_ok() {
            return;
        }
    }
}

/// Word counting from 4 vCPUs: insert-if-absent then atomic increments;
/// every count exact.
#[test]
fn hash_counts_from_four_cpus_are_exact() {
    const WORDS: u32 = 50;
    const ROUNDS: u32 = 200;
    let f = setup_map(MapType::Hash, 4, 8, 64, THREADS);
    on_cpus(|cpu| {
        let mem = f.vcpu_mem();
        for round in 0..ROUNDS {
            let key = ((round * 7 + cpu) % WORDS).to_le_bytes();
            let off = match lookup(&f.def, &mem, &key, cpu).unwrap() {
                Some(off) => off,
                None => {
                    match update(&f.def, &mem, &key, &0u64.to_le_bytes(), BPF_NOEXIST, cpu) {
                        Ok(()) | Err(MapError::Exists) => {}
                        Err(e) => panic!("update: {e}"),
                    }
                    lookup(&f.def, &mem, &key, cpu)
                        .unwrap()
                        .expect("just inserted")
                }
            };
            atomic_add(&f, off);
        }
    });
    let mem = f.mem();
    let mut total = 0;
    for word in 0..WORDS {
        let off = lookup_sys(&f.def, &mem, &word.to_le_bytes())
            .unwrap()
            .unwrap();
        total += value_u64(&f, off);
    }
    assert_eq!(total, u64::from(THREADS * ROUNDS));
    assert_eq!(keys(&f).unwrap().len(), WORDS as usize);
}

/// Each CPU inserts and deletes its own keys over and over while the
/// others read a set of stable keys: no stable key is ever missed, no
/// operation fails, and the churned keys end as each CPU left them.
#[test]
fn churn_never_hides_stable_keys() {
    const STABLE: u32 = 16;
    let f = setup_map(MapType::Hash, 4, 8, 64, THREADS);
    let mem = f.mem();
    for k in 0..STABLE {
        update(
            &f.def,
            &mem,
            &k.to_le_bytes(),
            &u64::from(k).to_le_bytes(),
            BPF_ANY,
            0,
        )
        .unwrap();
    }
    on_cpus(|cpu| {
        let mem = f.vcpu_mem();
        for round in 0..2000u32 {
            let own = (1000 + cpu * 100 + round % 10).to_le_bytes();
            if round % 20 < 10 {
                update(&f.def, &mem, &own, &[1; 8], BPF_NOEXIST, cpu).unwrap();
            } else {
                delete(&f.def, &mem, &own).unwrap();
            }
            let stable = (round % STABLE).to_le_bytes();
            let off = lookup(&f.def, &mem, &stable, cpu).unwrap();
            assert!(off.is_some(), "stable key {} missed", round % STABLE);
        }
    });
    // 2000 rounds end on a delete phase: only the stable keys remain.
    assert_eq!(keys(&f).unwrap().len(), STABLE as usize);
}

/// A full LRU map under inserts from every CPU: never more than
/// max_entries, never a failed update, every key holds its own value.
#[test]
fn lru_inserts_from_four_cpus_never_fail() {
    let f = setup_map(MapType::LruHash, 4, 8, 16, THREADS);
    on_cpus(|cpu| {
        let mem = f.vcpu_mem();
        for round in 0..3000u32 {
            let key = round.wrapping_mul(2_654_435_761).wrapping_add(cpu) % 97;
            update(
                &f.def,
                &mem,
                &key.to_le_bytes(),
                &u64::from(key).to_le_bytes(),
                BPF_ANY,
                cpu,
            )
            .unwrap();
            if let Some(off) = lookup(&f.def, &mem, &key.to_le_bytes(), cpu).unwrap() {
                // Another CPU may have evicted and reused it meanwhile:
                // only a value that is some key's is right.
                assert!(value_u64(&f, off) < 97);
            }
        }
    });
    let all = keys(&f).unwrap();
    assert!(!all.is_empty() && all.len() <= 16, "{} keys", all.len());
    let mem = f.mem();
    for key in all {
        let off = lookup_sys(&f.def, &mem, &key).unwrap().unwrap();
        assert_eq!(
            value_u64(&f, off),
            u64::from(u32::from_le_bytes(key[..].try_into().unwrap()))
        );
    }
}

/// Per-CPU counters: each CPU increments its own copy without atomics;
/// the host sums the copies.
#[test]
fn percpu_array_counters_sum_exactly() {
    let f = setup_map(MapType::PercpuArray, 4, 8, 4, THREADS);
    on_cpus(|cpu| {
        let mem = f.vcpu_mem();
        for _ in 0..10_000 {
            let off = lookup(&f.def, &mem, &2u32.to_le_bytes(), cpu)
                .unwrap()
                .unwrap();
            let n = mem.load_u64(off).unwrap();
            mem.store_u64(off, n + 1).unwrap();
        }
    });
    let off0 = lookup_sys(&f.def, &f.mem(), &2u32.to_le_bytes())
        .unwrap()
        .unwrap();
    let sum: u64 = (0..THREADS)
        .map(|c| value_u64(&f, f.def.percpu_value_off(off0, c).unwrap()))
        .sum();
    assert_eq!(sum, 40_000);
}

/// A counter in a value, incremented under its `bpf_spin_lock` by every
/// CPU with plain (non-atomic) reads and writes: exact.
#[test]
fn spin_locked_counter_is_exact() {
    let def = MapDef::new(MapType::Array as u32, 4, 16, 1, 0, THREADS)
        .unwrap()
        .with_spin_lock(0)
        .unwrap();
    let f = super::setup_storage(def);
    on_cpus(|cpu| {
        let mem = f.vcpu_mem();
        let off = lookup(&f.def, &mem, &0u32.to_le_bytes(), cpu)
            .unwrap()
            .unwrap();
        for _ in 0..5000 {
            lock::with_lock(&mem, off, || {
                let mut n = [0; 8];
                mem.read(off + 8, &mut n)?;
                mem.write(off + 8, &(u64::from_le_bytes(n) + 1).to_le_bytes())
            })
            .unwrap();
        }
    });
    assert_eq!(value_u64(&f, 8), u64::from(THREADS) * 5000);
}

/// Pushes from every CPU, then pops: every value comes out exactly once.
#[test]
fn queue_pushes_from_four_cpus_are_all_kept() {
    let f = setup_map(MapType::Queue, 0, 4, 4000, THREADS);
    on_cpus(|cpu| {
        let mem = f.vcpu_mem();
        for n in 0..1000u32 {
            push(&f.def, &mem, &(cpu * 1000 + n).to_le_bytes(), BPF_ANY).unwrap();
        }
    });
    let mem = f.mem();
    let mut out = [0; 4];
    let mut seen = vec![];
    while pop(&f.def, &mem, &mut out).is_ok() {
        seen.push(u32::from_le_bytes(out));
    }
    // FIFO per CPU.
    for cpu in 0..THREADS {
        let mine: Vec<u32> = seen.iter().copied().filter(|v| v / 1000 == cpu).collect();
        assert_eq!(mine, (cpu * 1000..cpu * 1000 + 1000).collect::<Vec<_>>());
    }
    assert_eq!(seen.len(), 4000);
}
