//! Random operation sequences against `std::collections` models.

use super::{Fixture, keys, setup_map, value_u64};
use crate::maps::*;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};

#[derive(Clone, Debug)]
enum Op {
    Update {
        key: u32,
        value: u64,
        flags: u64,
        cpu: u32,
    },
    Delete {
        key: u32,
    },
    Lookup {
        key: u32,
        cpu: u32,
    },
    Iterate,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..24u32;
    prop_oneof![
        4 => (key.clone(), any::<u64>(), 0..3u64, 0..2u32)
            .prop_map(|(key, value, flags, cpu)| Op::Update { key, value, flags, cpu }),
        2 => key.clone().prop_map(|key| Op::Delete { key }),
        3 => (key, 0..2u32).prop_map(|(key, cpu)| Op::Lookup { key, cpu }),
        1 => Just(Op::Iterate),
    ]
}

fn lookup_u64(f: &Fixture, key: u32, cpu: u32) -> Option<u64> {
    lookup(&f.def, &f.mem(), &key.to_le_bytes(), cpu)
        .unwrap()
        .map(|off| value_u64(f, off))
}

fn present(f: &Fixture) -> HashSet<u32> {
    let keys = keys(f).unwrap();
    let set: HashSet<u32> = keys
        .iter()
        .map(|k| u32::from_le_bytes(k[..].try_into().unwrap()))
        .collect();
    assert_eq!(set.len(), keys.len(), "next_key gave a key twice");
    set
}

const MAX: u32 = 8;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// HASH behaves as a HashMap bounded to max_entries.
    #[test]
    fn hash_matches_a_hashmap(ops in prop::collection::vec(op(), 1..200)) {
        let f = setup_map(MapType::Hash, 4, 8, MAX, 2);
        let mem = f.mem();
        let mut model: HashMap<u32, u64> = HashMap::new();
        for op in ops {
            match op {
                Op::Update { key, value, flags, cpu } => {
                    let got = update(&f.def, &mem, &key.to_le_bytes(), &value.to_le_bytes(), flags, cpu);
                    let exists = model.contains_key(&key);
                    let want = match flags {
                        BPF_NOEXIST if exists => Err(MapError::Exists),
                        BPF_EXIST if !exists => Err(MapError::NotFound),
                        _ if !exists && model.len() == MAX as usize => Err(MapError::Full),
                        _ => Ok(()),
                    };
                    prop_assert_eq!(got, want);
                    if want.is_ok() {
                        model.insert(key, value);
                    }
                }
                Op::Delete { key } => {
                    let want = if model.remove(&key).is_some() { Ok(()) } else { Err(MapError::NotFound) };
                    prop_assert_eq!(delete(&f.def, &mem, &key.to_le_bytes()), want);
                }
                Op::Lookup { key, cpu } => {
                    prop_assert_eq!(lookup_u64(&f, key, cpu), model.get(&key).copied());
                }
                Op::Iterate => {
                    prop_assert_eq!(present(&f), model.keys().copied().collect::<HashSet<_>>());
                }
            }
        }
        prop_assert_eq!(present(&f), model.keys().copied().collect::<HashSet<_>>());
    }

    /// LRU_HASH: never more than max_entries keys, never fails for room,
    /// every key present has its last value, a key just used by a CPU
    /// survives that CPU's next insertion.
    #[test]
    fn lru_keeps_its_bounds_and_recent_keys(ops in prop::collection::vec(op(), 1..200)) {
        let f = setup_map(MapType::LruHash, 4, 8, MAX, 2);
        let mem = f.mem();
        // Last value written per key: what the key holds if present.
        let mut written: HashMap<u32, u64> = HashMap::new();
        let mut recent: [Option<u32>; 2] = [None, None];
        for op in ops {
            let before = present(&f);
            match op {
                Op::Update { key, value, flags, cpu } => {
                    let got = update(&f.def, &mem, &key.to_le_bytes(), &value.to_le_bytes(), flags, cpu);
                    let exists = before.contains(&key);
                    let want = match flags {
                        BPF_NOEXIST if exists => Err(MapError::Exists),
                        BPF_EXIST if !exists => Err(MapError::NotFound),
                        _ => Ok(()),
                    };
                    prop_assert_eq!(got, want);
                    if want.is_ok() {
                        written.insert(key, value);
                        let after = present(&f);
                        prop_assert!(after.contains(&key));
                        if let Some(r) = recent[cpu as usize].filter(|r| before.contains(r)) {
                            prop_assert!(after.contains(&r), "{} was just used by CPU {}", r, cpu);
                        }
                        // Only an insertion into a full map evicts, one key.
                        let lost = before.difference(&after).count();
                        prop_assert_eq!(lost, usize::from(!exists && before.len() == MAX as usize));
                        recent[cpu as usize] = Some(key);
                    }
                }
                Op::Delete { key } => {
                    let want = if before.contains(&key) { Ok(()) } else { Err(MapError::NotFound) };
                    prop_assert_eq!(delete(&f.def, &mem, &key.to_le_bytes()), want);
                    // A deleted key is nobody's recent element any more.
                    recent.iter_mut().filter(|r| **r == Some(key)).for_each(|r| *r = None);
                }
                Op::Lookup { key, cpu } => {
                    let got = lookup_u64(&f, key, cpu);
                    prop_assert_eq!(got, before.contains(&key).then(|| written[&key]));
                    if got.is_some() {
                        recent[cpu as usize] = Some(key);
                    }
                }
                Op::Iterate => {}
            }
            prop_assert!(present(&f).len() <= MAX as usize);
        }
    }

    /// QUEUE and STACK behave as a VecDeque of max_entries values.
    #[test]
    fn queue_and_stack_match_a_vecdeque(
        stack in any::<bool>(),
        ops in prop::collection::vec((0..4u8, any::<u32>(), 0..3u64), 1..200),
    ) {
        let ty = if stack { MapType::Stack } else { MapType::Queue };
        let f = setup_map(ty, 0, 4, 5, 1);
        let mem = f.mem();
        let mut model: VecDeque<u32> = VecDeque::new();
        for (kind, value, flags) in ops {
            let mut out = [0u8; 4];
            match kind {
                0 | 1 => {
                    let got = push(&f.def, &mem, &value.to_le_bytes(), flags);
                    let want = match flags {
                        BPF_NOEXIST => Err(MapError::InvalidFlags),
                        BPF_ANY if model.len() == 5 => Err(MapError::Full),
                        _ => Ok(()),
                    };
                    prop_assert_eq!(got, want);
                    if want.is_ok() {
                        if model.len() == 5 {
                            model.pop_front();
                        }
                        model.push_back(value);
                    }
                }
                2 => {
                    let want = if stack { model.pop_back() } else { model.pop_front() };
                    let got = pop(&f.def, &mem, &mut out).map(|()| u32::from_le_bytes(out));
                    prop_assert_eq!(got.ok(), want);
                }
                _ => {
                    let want = if stack { model.back() } else { model.front() }.copied();
                    let got = peek(&f.def, &mem, &mut out).map(|()| u32::from_le_bytes(out));
                    prop_assert_eq!(got.ok(), want);
                }
            }
            // The host's listing: every value in pop order, none removed.
            let mut listed = Vec::new();
            queue_values(&f.def, &mem, |off| {
                let mut value = [0u8; 4];
                mem.read(off, &mut value)?;
                listed.push(u32::from_le_bytes(value));
                Ok(())
            })
            .unwrap();
            let want: Vec<u32> = if stack {
                model.iter().rev().copied().collect()
            } else {
                model.iter().copied().collect()
            };
            prop_assert_eq!(listed, want);
        }
    }
}
