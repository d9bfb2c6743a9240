//! The host's map API against a hostile guest: a hash map whose
//! bookkeeping a program scribbled over (through its own lookup's
//! pointer, or as guest memory written directly: a program can write the
//! same bytes), a scribbled header, and programs updating the map on four
//! vCPUs while the host reads it. Every host operation must come back
//! soon with a correct, bounded result or `Corrupt`/`Busy`; never hang,
//! panic, or write outside the map.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use integration_tests::kvm_available;
use shm::maps::hash::{Layout as HashLayout, hash_key};
use shm::maps::{BPF_ANY, BPF_NOEXIST, MapError};
use std::time::{Duration, Instant};
use vmm::{MapHandle, Outcome, ProgramInput, Sandbox};

const SCRIBBLE: &[u8] = include_bytes!("../../images/progs/scribble.bpf.o");

/// How long any one host operation, or a whole scenario of them, may
/// take: generous, this is about hangs, not speed.
const BOUND: Duration = Duration::from_secs(1);

// shm::maps::hash's storage (the diagram there): a control block, the
// buckets {lock, head}, then elements {next, hash, free, ref, key, value}.
const FREE_LOCK: usize = 0;
const FREE_HEAD: usize = 4;
const ELEM_NEXT: usize = 0;
const ELEM_HASH: usize = 4;
const ELEM_FREE: usize = 8;
const ELEM_KEY: usize = 16;
/// A link that is no element: the end of bucket `b`'s chain is `END | b`.
const END: u32 = 1 << 31;
/// `free` of an element in a chain.
const IN_USE: u32 = u32::MAX - 1;
/// The end of the free list.
const FREE_END: u32 = u32::MAX;

/// Keys 0..FILLED of `victim` hold key * 3 + 1 (the `fill` program).
const FILLED: u32 = 40;

fn setup_sandbox(cpus: usize) -> Sandbox {
    integration_tests::sandbox_with(cpus, &[SCRIBBLE])
}

/// Runs `name` on `cpu`; its outcome and context after the run.
fn run(sandbox: &Sandbox, name: &str, cpu: usize, data: &[u8]) -> (Outcome, Vec<u8>) {
    let run = integration_tests::run_named(sandbox, name, cpu, data);
    (run.report.outcome, run.data_out)
}

fn returned(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Returned(r0) => r0 as u32 as i32,
        other => panic!("{other:?}"),
    }
}

fn key(k: u32) -> [u8; 4] {
    k.to_le_bytes()
}

fn value_of(k: u32) -> [u8; 8] {
    (u64::from(k) * 3 + 1).to_le_bytes()
}

/// A hash map's storage, seen from the guest's side: raw reads and writes
/// of its bookkeeping.
struct Storage<'a> {
    sandbox: &'a Sandbox,
    data: u64,
    size: usize,
    l: HashLayout,
}

impl<'a> Storage<'a> {
    fn of(sandbox: &'a Sandbox, map: &MapHandle<'_>) -> Storage<'a> {
        Storage {
            sandbox,
            data: map.info().data(),
            size: map.def().storage_size(),
            l: HashLayout::new(map.def()).unwrap(),
        }
    }

    fn read_u32(&self, off: usize) -> u32 {
        let mut b = [0; 4];
        self.sandbox
            .memory()
            .read(self.data + off as u64, &mut b)
            .unwrap();
        u32::from_le_bytes(b)
    }

    fn write_u32(&self, off: usize, v: u32) {
        self.sandbox
            .memory()
            .write(self.data + off as u64, &v.to_le_bytes())
            .unwrap();
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0; self.size];
        self.sandbox.memory().read(self.data, &mut b).unwrap();
        b
    }

    fn restore(&self, bytes: &[u8]) {
        self.sandbox.memory().write(self.data, bytes).unwrap();
    }

    fn lock(&self, b: u32) -> usize {
        self.l.buckets_off + b as usize * 8
    }

    fn head(&self, b: u32) -> usize {
        self.lock(b) + 4
    }

    fn elem(&self, i: u32) -> usize {
        self.l.elems_off + i as usize * self.l.elem_size
    }

    fn bucket_of(&self, k: u32) -> u32 {
        hash_key(&key(k)) & (self.l.n_buckets - 1)
    }

    /// The elements of bucket `b`'s chain (before any scribbling).
    fn chain(&self, b: u32) -> Vec<u32> {
        let mut chain = vec![];
        let mut link = self.read_u32(self.head(b));
        while link & END == 0 {
            chain.push(link);
            link = self.read_u32(self.elem(link) + ELEM_NEXT);
        }
        chain
    }
}

/// Guest memory of the maps region outside `storage`: what the host must
/// never write.
fn outside(sandbox: &Sandbox, storage: &Storage<'_>) -> Vec<u8> {
    let start = sandbox.layout().maps_start();
    let end = sandbox
        .maps()
        .filter(|m| !m.info().is_global_data())
        .map(|m| m.info().data() + m.def().storage_size() as u64)
        .max()
        .unwrap();
    let mut bytes = vec![0; (end - start) as usize];
    sandbox.memory().read(start, &mut bytes).unwrap();
    let at = (storage.data - start) as usize;
    bytes[at..at + storage.size].fill(0);
    bytes
}

/// Whether `e` is what a scribbled map may answer.
fn hostile_error(e: MapError) -> bool {
    matches!(e, MapError::Corrupt | MapError::Busy)
}

/// Runs every host operation on `victim`; each must end within [`BOUND`]
/// with a bounded result or a `Corrupt`/`Busy` error, write nothing
/// outside the map, and agree with itself where it succeeds. Returns
/// what `keys()` gave, for scenario-specific checks.
fn exercise(sandbox: &Sandbox, scenario: &str) -> Result<Vec<Vec<u8>>, MapError> {
    let victim = sandbox.find_map("victim").unwrap();
    let storage = Storage::of(sandbox, &victim);
    let before = outside(sandbox, &storage);
    let max = victim.def().max_entries() as usize;
    let start = Instant::now();
    let timed = |what: &str, t: Instant| {
        assert!(
            t.elapsed() < BOUND,
            "{scenario}: {what} took {:?}",
            t.elapsed()
        );
    };

    let t = Instant::now();
    let keys = victim.keys();
    timed("keys", t);
    match &keys {
        Ok(keys) => assert!(keys.len() <= max, "{scenario}: {} keys", keys.len()),
        Err(e) => assert!(hostile_error(*e), "{scenario}: keys: {e:?}"),
    }
    let t = Instant::now();
    match victim.entries() {
        Ok(entries) => {
            assert!(entries.len() <= max, "{scenario}");
            for e in entries {
                assert_eq!((e.key.len(), e.values.len()), (4, 1), "{scenario}");
                assert_eq!(e.values[0].len(), 8, "{scenario}");
            }
        }
        Err(e) => assert!(hostile_error(e), "{scenario}: entries: {e:?}"),
    }
    timed("entries", t);
    for k in [0, 7, FILLED - 1, FILLED + 5, 1000] {
        let t = Instant::now();
        match victim.lookup(&key(k)) {
            Ok(Some(v)) => assert_eq!(v.len(), 8, "{scenario}"),
            Ok(None) => {}
            Err(e) => assert!(hostile_error(e), "{scenario}: lookup {k}: {e:?}"),
        }
        timed("lookup", t);
    }
    let may_fail = |e: MapError| {
        hostile_error(e) || matches!(e, MapError::NotFound | MapError::Full | MapError::Exists)
    };
    for (k, flags) in [(3, BPF_ANY), (FILLED + 2, BPF_NOEXIST), (500, BPF_ANY)] {
        let t = Instant::now();
        if let Err(e) = victim.update(&key(k), &value_of(k), flags) {
            assert!(may_fail(e), "{scenario}: update {k}: {e:?}");
        }
        timed("update", t);
    }
    for k in [5, FILLED + 9] {
        let t = Instant::now();
        if let Err(e) = victim.delete(&key(k)) {
            assert!(may_fail(e), "{scenario}: delete {k}: {e:?}");
        }
        timed("delete", t);
    }
    timed("the scenario", start);
    assert!(
        before == outside(sandbox, &storage),
        "{scenario}: the host wrote outside the map"
    );
    keys
}

/// Keys 0..FILLED in `victim`, by the program.
fn setup_filled(cpus: usize) -> Sandbox {
    let sandbox = setup_sandbox(cpus);
    let (outcome, _) = run(&sandbox, "fill", 0, &FILLED.to_le_bytes());
    assert_eq!(returned(outcome), FILLED as i32);
    sandbox
}

#[test]
fn a_scribbled_hash_map_gives_bounded_answers_or_errors() {
    if !kvm_available("a_scribbled_hash_map_gives_bounded_answers_or_errors") {
        return;
    }
    let sandbox = setup_filled(1);
    let victim = sandbox.find_map("victim").unwrap();
    let s = Storage::of(&sandbox, &victim);
    let clean = s.bytes();
    let max = victim.def().max_entries();
    let b0 = s.bucket_of(0);
    let chain0 = s.chain(b0);
    assert!(!chain0.is_empty());

    type Scribble = fn(&Storage<'_>, u32, &[u32]);
    let scenarios: &[(&str, Scribble)] = &[
        ("a chain that loops on itself", |s, b0, _| {
            let i = s.read_u32(s.head(b0));
            s.write_u32(s.elem(i) + ELEM_NEXT, i);
        }),
        (
            "every bucket into one cycle through every element",
            |s, _, _| {
                for i in 0..FILLED {
                    s.write_u32(s.elem(i) + ELEM_NEXT, (i + 1) % FILLED);
                }
                for b in 0..s.l.n_buckets {
                    s.write_u32(s.head(b), 0);
                }
            },
        ),
        ("a head out of range", |s, b0, _| {
            s.write_u32(s.head(b0), 1000);
        }),
        ("a next out of range", |s, b0, _| {
            let i = s.read_u32(s.head(b0));
            s.write_u32(s.elem(i) + ELEM_NEXT, END - 1);
        }),
        (
            "a chain ending in another bucket's marker",
            |s, b0, chain0| {
                let last = *chain0.last().unwrap();
                s.write_u32(s.elem(last) + ELEM_NEXT, END | ((b0 + 1) % s.l.n_buckets));
            },
        ),
        ("every lock held", |s, _, _| {
            s.write_u32(FREE_LOCK, 1);
            for b in 0..s.l.n_buckets {
                s.write_u32(s.lock(b), 1);
            }
        }),
        ("garbage in every lock word", |s, _, _| {
            s.write_u32(FREE_LOCK, 0xdead_beef);
            for b in 0..s.l.n_buckets {
                s.write_u32(s.lock(b), 0xdead_beef);
            }
        }),
        ("a free list out of range", |s, _, _| {
            s.write_u32(FREE_HEAD, 5000);
        }),
        ("a free list that loops", |s, _, _| {
            s.write_u32(s.elem(FILLED) + ELEM_FREE, FILLED);
        }),
        ("an element in use on the free list", |s, b0, _| {
            s.write_u32(FREE_HEAD, s.read_u32(s.head(b0)));
        }),
        ("every element one chain of the same key", |s, b0, _| {
            let max = s.l.n_buckets; // 64 buckets for 64 elements
            for i in 0..max {
                let e = s.elem(i);
                s.write_u32(e + ELEM_NEXT, if i + 1 < max { i + 1 } else { END | b0 });
                s.write_u32(e + ELEM_HASH, hash_key(&key(0)));
                s.write_u32(e + ELEM_FREE, IN_USE);
                s.write_u32(e + ELEM_KEY, 0);
            }
            for b in 0..s.l.n_buckets {
                s.write_u32(s.head(b), if b == b0 { 0 } else { END | b });
            }
            s.write_u32(FREE_HEAD, FREE_END);
        }),
        ("keys moved to buckets they do not hash to", |s, _, _| {
            // Every key in bucket 0's chain (key k is element k): a
            // listing by next_key would start again from the first key
            // at each one not in its own bucket.
            for i in 0..FILLED {
                let next = if i + 1 < FILLED { i + 1 } else { END };
                s.write_u32(s.elem(i) + ELEM_NEXT, next);
            }
            for b in 0..s.l.n_buckets {
                s.write_u32(s.head(b), if b == 0 { 0 } else { END | b });
            }
        }),
    ];
    for (scenario, scribble) in scenarios {
        s.restore(&clean);
        scribble(&s, b0, &chain0);
        let keys = exercise(&sandbox, scenario);
        match *scenario {
            "a chain that loops on itself" | "a head out of range" | "a next out of range" => {
                assert_eq!(keys, Err(MapError::Corrupt), "{scenario}");
            }
            "every lock held" | "garbage in every lock word" => {
                // Listings copy under the bucket locks, as writers do.
                assert_eq!(keys, Err(MapError::Busy), "{scenario}");
            }
            "every element one chain of the same key" => {
                assert_eq!(keys.unwrap(), vec![key(0).to_vec(); max as usize]);
            }
            "keys moved to buckets they do not hash to" => {
                let want: Vec<Vec<u8>> = (0..FILLED).map(|k| key(k).to_vec()).collect();
                assert_eq!(keys.unwrap(), want, "{scenario}");
            }
            _ => {}
        }
    }

    // Writers of a held bucket give up, readers still answer right.
    s.restore(&clean);
    s.write_u32(s.lock(b0), 1);
    assert_eq!(
        victim.update(&key(0), &value_of(0), BPF_ANY),
        Err(MapError::Busy)
    );
    assert_eq!(victim.delete(&key(0)), Err(MapError::Busy));
    assert_eq!(victim.lookup(&key(0)), Ok(Some(value_of(0).to_vec())));

    // Garbage everywhere, from a few seeds.
    for seed in 1..=8u64 {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let garbage: Vec<u8> = (0..clean.len())
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Small numbers often, so that indices are in range.
                if x % 3 == 0 {
                    (x >> 8) as u8 % 64
                } else {
                    (x >> 16) as u8
                }
            })
            .collect();
        s.restore(&garbage);
        let _ = exercise(&sandbox, &format!("garbage from seed {seed}"));
    }
}

/// `struct addr_args` -> the guest address of `k`'s value.
fn value_addr(sandbox: &Sandbox, k: u32) -> u64 {
    let (outcome, out) = run(
        sandbox,
        "value_addr",
        0,
        &[key(k), [0; 4], [0; 4], [0; 4]].concat(),
    );
    assert_eq!(returned(outcome), 0);
    u64::from_le_bytes(out[8..16].try_into().unwrap())
}

/// Has the `poke` program write `value` at `addr` (which must be reachable
/// from `k`'s value).
fn poke(sandbox: &Sandbox, k: u32, addr: u64, value: u32) {
    let offset = i32::try_from(addr as i64 - value_addr(sandbox, k) as i64).unwrap();
    let args = [key(k), offset.to_le_bytes(), value.to_le_bytes()].concat();
    assert_eq!(returned(run(sandbox, "poke", 0, &args).0), 0);
}

#[test]
fn a_program_scribbling_through_its_lookup_cannot_hang_the_host() {
    if !kvm_available("a_program_scribbling_through_its_lookup_cannot_hang_the_host") {
        return;
    }
    let sandbox = setup_filled(1);
    let victim = sandbox.find_map("victim").unwrap();
    let s = Storage::of(&sandbox, &victim);
    let clean = s.bytes();
    let b0 = s.bucket_of(0);
    let first = s.read_u32(s.head(b0));

    // The program points the first element of key 0's chain at itself.
    let data = victim.info().data();
    poke(
        &sandbox,
        0,
        data + s.elem(first) as u64 + ELEM_NEXT as u64,
        first,
    );
    assert_eq!(s.read_u32(s.elem(first) + ELEM_NEXT), first);
    assert_eq!(
        exercise(&sandbox, "a program's cycle"),
        Err(MapError::Corrupt)
    );

    // The program leaves key 0's bucket lock taken.
    s.restore(&clean);
    poke(&sandbox, 0, data + s.lock(b0) as u64, 1);
    let t = Instant::now();
    assert_eq!(
        victim.update(&key(0), &value_of(0), BPF_ANY),
        Err(MapError::Busy)
    );
    assert!(t.elapsed() < BOUND);
    assert_eq!(victim.lookup(&key(0)), Ok(Some(value_of(0).to_vec())));
    let _ = exercise(&sandbox, "a program's held lock");
}

#[test]
fn a_scribbled_header_changes_nothing_for_the_host() {
    if !kvm_available("a_scribbled_header_changes_nothing_for_the_host") {
        return;
    }
    let sandbox = setup_filled(1);
    let victim = sandbox.find_map("victim").unwrap();
    let header = victim.info().header();
    let entries = victim.entries().unwrap();
    assert_eq!(entries.len(), FILLED as usize);
    // The program rewrites the storage pointer (after which its lookups
    // fail, so the rest of the header is written directly).
    poke(&sandbox, 1, header + 32, 0x1000);
    sandbox.memory().write(header, &[0xff; 32]).unwrap();
    sandbox.memory().write(header + 40, &[0xa5; 24]).unwrap();

    assert_eq!(victim.entries().unwrap(), entries);
    assert_eq!(victim.lookup(&key(7)), Ok(Some(value_of(7).to_vec())));
    victim
        .update(&key(FILLED), &value_of(FILLED), BPF_NOEXIST)
        .unwrap();
    victim.delete(&key(2)).unwrap();
    assert_eq!(victim.keys().unwrap().len(), FILLED as usize);
    // The program's own lookups no longer find the map (or fault).
    let (outcome, _) = run(&sandbox, "value_addr", 0, &[0; 16]);
    assert!(
        matches!(outcome, Outcome::Returned(r) if r as u32 as i32 == -1)
            || matches!(outcome, Outcome::Trapped(_)),
        "{outcome:?}"
    );
}

#[test]
fn listing_a_map_linked_into_one_long_chain_is_linear() {
    if !kvm_available("listing_a_map_linked_into_one_long_chain_is_linear") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let big = sandbox.find_map("big").unwrap();
    let s = Storage::of(&sandbox, &big);
    let max = big.def().max_entries();
    assert_eq!(max, 1 << 16);
    // Every element holds key 0 and links to the next, in one chain: a
    // listing by next_key would walk the whole chain for each key.
    let b0 = s.bucket_of(0);
    let mut bytes = s.bytes();
    let put = |bytes: &mut [u8], off: usize, v: u32| {
        bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    };
    put(&mut bytes, FREE_HEAD, FREE_END);
    for b in 0..s.l.n_buckets {
        put(&mut bytes, s.head(b), if b == b0 { 0 } else { END | b });
    }
    for i in 0..max {
        let e = s.elem(i);
        put(
            &mut bytes,
            e + ELEM_NEXT,
            if i + 1 < max { i + 1 } else { END | b0 },
        );
        put(&mut bytes, e + ELEM_HASH, hash_key(&key(0)));
        put(&mut bytes, e + ELEM_FREE, IN_USE);
        put(&mut bytes, e + ELEM_KEY, 0);
    }
    s.restore(&bytes);
    let t = Instant::now();
    let keys = big.keys().unwrap();
    assert_eq!(keys.len(), max as usize);
    assert!(keys.iter().all(|k| k[..] == key(0)));
    assert_eq!(big.entries().unwrap().len(), max as usize);
    assert_eq!(big.lookup(&key(0)).unwrap(), Some(vec![0; 8]));
    big.delete(&key(0)).unwrap();
    // A new key of the long bucket walks it once, under its lock.
    let in_b0 = (1..).find(|&k| s.bucket_of(k) == b0).unwrap();
    big.update(&key(in_b0), &[1; 8], BPF_NOEXIST).unwrap();
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
}

#[test]
fn an_lru_map_whose_buckets_are_all_held_gives_up_soon() {
    if !kvm_available("an_lru_map_whose_buckets_are_all_held_gives_up_soon") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let lru = sandbox.find_map("big_lru").unwrap();
    let s = Storage::of(&sandbox, &lru);
    let max = lru.def().max_entries();
    for k in 0..max {
        lru.update(&key(k), &value_of(k), BPF_NOEXIST).unwrap();
    }
    // A new key whose bucket is empty, so that eviction must take an
    // element from another bucket; and every other bucket held.
    let k = (max..)
        .find(|&k| s.chain(s.bucket_of(k)).is_empty())
        .unwrap();
    let mine = s.bucket_of(k);
    let clean = s.bytes();
    let mut bytes = clean.clone();
    for b in (0..s.l.n_buckets).filter(|&b| b != mine) {
        bytes[s.lock(b)..s.lock(b) + 4].copy_from_slice(&1u32.to_le_bytes());
    }
    s.restore(&bytes);
    let t = Instant::now();
    assert_eq!(
        lru.update(&key(k), &value_of(k), BPF_ANY),
        Err(MapError::Busy)
    );
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    assert_eq!(lru.keys(), Err(MapError::Busy));
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    // Let go, the insertion evicts.
    s.restore(&clean);
    lru.update(&key(k), &value_of(k), BPF_ANY).unwrap();
    assert_eq!(lru.keys().unwrap().len(), max as usize);
}

#[test]
fn the_host_reads_while_four_vcpus_churn() {
    if !kvm_available("the_host_reads_while_four_vcpus_churn") {
        return;
    }
    let sandbox = setup_sandbox(4);
    let victim = sandbox.find_map("victim").unwrap();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let (mut reads, mut busy) = (0u64, 0u64);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4u32)
            .map(|cpu| {
                let (sandbox, done) = (&sandbox, &done);
                scope.spawn(move || {
                    // struct churn_args { seed, rounds }.
                    let args = [(cpu * 16).to_le_bytes(), 2000u32.to_le_bytes()].concat();
                    let id = sandbox.find_program("churn").unwrap();
                    let input = ProgramInput {
                        data: &args,
                        repeat: 60,
                        timeout: Some(Duration::from_secs(30)),
                    };
                    let run = sandbox.run_program(id, cpu as usize, &input);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    run.unwrap().report.outcome
                })
            })
            .collect();
        let mut k = 0u32;
        while done.load(std::sync::atomic::Ordering::SeqCst) < 4 {
            let t = Instant::now();
            let mut check = |r: Result<(), MapError>| match r {
                Ok(()) => {}
                Err(MapError::Busy) => busy += 1,
                Err(e) => panic!("{e:?}"),
            };
            check(victim.entries().map(|entries| {
                assert!(entries.len() <= 64);
                for e in entries {
                    let k = u32::from_le_bytes(e.key[..].try_into().unwrap());
                    assert_eq!(e.values[0], value_of(k), "key {k}");
                }
            }));
            check(victim.lookup(&key(k % 64)).map(|v| {
                if let Some(v) = v {
                    assert_eq!(v, value_of(k % 64));
                }
            }));
            check(
                match victim.update(&key(k % 64), &value_of(k % 64), BPF_ANY) {
                    Err(MapError::Full) => Ok(()),
                    r => r,
                },
            );
            check(match victim.delete(&key((k + 7) % 64)) {
                Err(MapError::NotFound) => Ok(()),
                r => r,
            });
            assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
            reads += 1;
            k += 1;
        }
        for worker in workers {
            assert_eq!(worker.join().unwrap(), Outcome::Returned(0));
        }
    });
    assert!(reads > 0);
    eprintln!("{reads} rounds of host operations, {busy} Busy");
    let entries = victim.entries().unwrap();
    assert!(entries.len() <= 64);
    for e in entries {
        let k = u32::from_le_bytes(e.key[..].try_into().unwrap());
        assert_eq!(e.values[0], value_of(k));
    }
}
