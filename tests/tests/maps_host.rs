//! The host's map API (`Sandbox::maps`, `MapHandle`) over clang-built
//! samples in a real VM: what programs leave in their maps, the host reads;
//! what the host writes, programs see; with the kernel's flag semantics and
//! errors.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::kvm_available;
use shm::maps::{BPF_ANY, BPF_EXIST, BPF_NOEXIST, MapError, flags};
use std::collections::BTreeMap;
use vmm::maps::maps_size_needed;
use vmm::{HelperSet, MapHandle, MapId, Sandbox, SandboxConfig, Slot};

const WORDCOUNT: &[u8] = include_bytes!("../../images/progs/wordcount.bpf.o");
const PERCPU: &[u8] = include_bytes!("../../images/progs/percpu.bpf.o");
const QUEUE_STACK: &[u8] = include_bytes!("../../images/progs/queue_stack.bpf.o");
const TAILCALL: &[u8] = include_bytes!("../../images/progs/tailcall.bpf.o");
const MAP_IN_MAP: &[u8] = include_bytes!("../../images/progs/map_in_map.bpf.o");
const KNOBS: &[u8] = include_bytes!("../../images/progs/knobs.bpf.o");
const MAPS: &[u8] = include_bytes!("../../images/progs/maps.bpf.o");
const LEGACY_MAPS: &[u8] = include_bytes!("../../images/progs/legacy_maps.bpf.o");
const LRU: &[u8] = include_bytes!("../../images/progs/lru.bpf.o");
const GLOBALS: &[u8] = include_bytes!("../../images/progs/globals.bpf.o");
const SCRIBBLE: &[u8] = include_bytes!("../../images/progs/scribble.bpf.o");
const FOR_EACH: &[u8] = include_bytes!("../../images/progs/for_each.bpf.o");
const SPINLOCK: &[u8] = include_bytes!("../../images/progs/spinlock.bpf.o");

/// A sandbox of `cpus` vCPUs with `objects` loaded.
fn setup_sandbox(cpus: usize, objects: &[&[u8]]) -> Sandbox {
    integration_tests::sandbox_with(cpus, objects)
}

/// Runs program `name` once on `cpu` with `data`; its return value (a C
/// `int`) and the context after the run.
fn run(sandbox: &Sandbox, name: &str, cpu: usize, data: &[u8]) -> (i32, Vec<u8>) {
    let (r0, data) = integration_tests::run_returning(sandbox, name, cpu, data);
    (r0 as u32 as i32, data)
}

fn map<'a>(sandbox: &'a Sandbox, name: &str) -> MapHandle<'a> {
    sandbox
        .find_map(name)
        .unwrap_or_else(|| panic!("no map {name}"))
}

fn map_id(sandbox: &Sandbox, name: &str) -> MapId {
    map(sandbox, name).id()
}

fn u32_key(k: u32) -> [u8; 4] {
    k.to_le_bytes()
}

fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// `struct word` of wordcount.bpf.c: 16 bytes, zero-padded.
fn word(s: &str) -> [u8; 16] {
    let mut w = [0; 16];
    w[..s.len()].copy_from_slice(s.as_bytes());
    w
}

/// `struct text` of wordcount.bpf.c.
fn text(s: &str) -> Vec<u8> {
    let mut t = (s.len() as u32).to_le_bytes().to_vec();
    t.extend_from_slice(s.as_bytes());
    t
}

/// Every element of a map of u64 values as (key, value).
fn u64_entries(map: &MapHandle<'_>) -> BTreeMap<Vec<u8>, u64> {
    map.entries()
        .unwrap()
        .into_iter()
        .map(|e| {
            assert_eq!(e.values.len(), 1);
            (e.key, u64_of(&e.values[0]))
        })
        .collect()
}

#[test]
fn wordcount_counts_are_read_through_entries_and_lookup() {
    if !kvm_available("wordcount_counts_are_read_through_entries_and_lookup") {
        return;
    }
    let sandbox = setup_sandbox(1, &[WORDCOUNT]);
    let (words, _) = run(
        &sandbox,
        "count_words",
        0,
        &text("the cat and the hat and the bat"),
    );
    assert_eq!(words, 8);
    let counts = map(&sandbox, "counts");
    let want: BTreeMap<Vec<u8>, u64> = [("the", 3), ("and", 2), ("cat", 1), ("hat", 1), ("bat", 1)]
        .iter()
        .map(|&(w, n)| (word(w).to_vec(), n))
        .collect();
    assert_eq!(u64_entries(&counts), want);
    assert_eq!(counts.keys().unwrap().len(), 5);
    assert_eq!(
        counts.lookup(&word("the")).unwrap().map(|v| u64_of(&v)),
        Some(3)
    );
    assert_eq!(counts.lookup(&word("dog")).unwrap(), None);
    // Counts add up over runs.
    run(&sandbox, "count_words", 0, &text("the end"));
    assert_eq!(
        counts.lookup(&word("the")).unwrap().map(|v| u64_of(&v)),
        Some(4)
    );
    assert_eq!(counts.info().name(), "counts");
    assert!(!counts.info().is_global_data());
    assert_eq!(counts.def().max_entries(), 1024);
}

#[test]
fn host_updates_and_deletes_are_seen_by_programs() {
    if !kvm_available("host_updates_and_deletes_are_seen_by_programs") {
        return;
    }
    let sandbox = setup_sandbox(1, &[WORDCOUNT]);
    run(&sandbox, "count_words", 0, &text("the cat"));
    let counts = map(&sandbox, "counts");
    let count_of = |w: &str| run(&sandbox, "word_count", 0, &word(w)).0;

    counts
        .update(&word("the"), &100u64.to_le_bytes(), BPF_ANY)
        .unwrap();
    assert_eq!(count_of("the"), 100);
    counts.delete(&word("the")).unwrap();
    assert_eq!(count_of("the"), 0);
    assert_eq!(counts.delete(&word("the")), Err(MapError::NotFound));

    // BPF_NOEXIST creates only, BPF_EXIST replaces only.
    counts
        .update(&word("zebra"), &7u64.to_le_bytes(), BPF_NOEXIST)
        .unwrap();
    assert_eq!(count_of("zebra"), 7);
    assert_eq!(
        counts.update(&word("zebra"), &1u64.to_le_bytes(), BPF_NOEXIST),
        Err(MapError::Exists)
    );
    assert_eq!(
        counts.update(&word("yak"), &1u64.to_le_bytes(), BPF_EXIST),
        Err(MapError::NotFound)
    );
    assert_eq!(count_of("yak"), 0);
    counts
        .update(&word("zebra"), &8u64.to_le_bytes(), BPF_EXIST)
        .unwrap();
    assert_eq!(count_of("zebra"), 8);
    assert_eq!(
        counts.update(&word("zebra"), &8u64.to_le_bytes(), 3),
        Err(MapError::InvalidFlags)
    );
    // The program increments what the host stored.
    run(&sandbox, "count_words", 0, &text("zebra"));
    assert_eq!(
        counts.lookup(&word("zebra")).unwrap().map(|v| u64_of(&v)),
        Some(9)
    );
    let keys: Vec<Vec<u8>> = u64_entries(&counts).into_keys().collect();
    assert_eq!(keys, [word("cat").to_vec(), word("zebra").to_vec()]);
}

#[test]
fn array_updates_follow_the_kernel_and_programs_see_them() {
    if !kvm_available("array_updates_follow_the_kernel_and_programs_see_them") {
        return;
    }
    let sandbox = setup_sandbox(1, &[MAPS]);
    let counters = map(&sandbox, "counters");
    counters
        .update(&u32_key(3), &41u64.to_le_bytes(), BPF_EXIST)
        .unwrap();
    assert_eq!(run(&sandbox, "count", 0, &3u32.to_le_bytes()).0, 42);
    assert_eq!(
        counters.lookup(&u32_key(3)).unwrap().map(|v| u64_of(&v)),
        Some(42)
    );
    // Every element exists: NOEXIST fails, delete is not an array's.
    assert_eq!(
        counters.update(&u32_key(3), &0u64.to_le_bytes(), BPF_NOEXIST),
        Err(MapError::Exists)
    );
    assert_eq!(counters.delete(&u32_key(3)), Err(MapError::Unsupported));
    assert_eq!(
        counters.update(&u32_key(16), &0u64.to_le_bytes(), BPF_ANY),
        Err(MapError::Full)
    );
    assert_eq!(counters.lookup(&u32_key(16)).unwrap(), None);
    // All 16 indices, in order.
    let entries = counters.entries().unwrap();
    let indices: Vec<u32> = entries.iter().map(|e| u32_at(&e.key, 0)).collect();
    assert_eq!(indices, (0..16).collect::<Vec<_>>());
    assert_eq!(u64_of(&entries[3].values[0]), 42);
}

#[test]
fn percpu_maps_hold_one_value_per_vcpu() {
    if !kvm_available("percpu_maps_hold_one_value_per_vcpu") {
        return;
    }
    let sandbox = setup_sandbox(4, &[PERCPU]);
    // struct hit_args { key, cpu, mine, key_mine }.
    let hit = |cpu: usize| {
        let mut args = 5u32.to_le_bytes().to_vec();
        args.resize(24, 0);
        let (ret, out) = run(&sandbox, "percpu_hit", cpu, &args);
        assert_eq!(u32_at(&out, 4), cpu as u32);
        ret
    };
    for cpu in 0..4 {
        for _ in 0..=cpu {
            hit(cpu);
        }
    }
    let values = |m: &MapHandle<'_>, key: u32| -> Vec<u64> {
        m.lookup_percpu(&u32_key(key))
            .unwrap()
            .unwrap()
            .iter()
            .map(|v| u64_of(v))
            .collect()
    };
    let hits = map(&sandbox, "hits");
    let per_key = map(&sandbox, "per_key");
    assert_eq!(values(&hits, 0), [1, 2, 3, 4]);
    assert_eq!(values(&per_key, 5), [1, 2, 3, 4]);
    assert_eq!(per_key.lookup_percpu(&u32_key(6)).unwrap(), None);
    assert_eq!(
        hits.lookup(&u32_key(0)).unwrap_err().to_string(),
        "Invalid argument: per-CPU map: look up every CPU's value"
    );
    let entries = per_key.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].values.len(), 4);

    // Each vCPU sees its own value of the host's per-CPU update.
    let tens: Vec<[u8; 8]> = [10u64, 20, 30, 40].map(u64::to_le_bytes).to_vec();
    let tens: Vec<&[u8]> = tens.iter().map(|v| &v[..]).collect();
    hits.update_percpu(&u32_key(0), &tens, BPF_ANY).unwrap();
    assert_eq!(hit(2), 31);
    assert_eq!(hit(0), 11);
    // struct sum_args { nr_cpus, key, total, key_total }.
    let mut sum = [4u32.to_le_bytes(), 5u32.to_le_bytes()].concat();
    sum.resize(24, 0);
    let (total, out) = run(&sandbox, "percpu_sum", 3, &sum);
    assert_eq!(total, 11 + 20 + 31 + 40);
    assert_eq!(u64_of(&out[16..]), 1 + 2 + 3 + 4 + 2);

    // A plain update gives every CPU the value; a new key too.
    per_key
        .update(&u32_key(9), &7u64.to_le_bytes(), BPF_NOEXIST)
        .unwrap();
    assert_eq!(values(&per_key, 9), [7; 4]);
    assert_eq!(
        hits.update_percpu(&u32_key(0), &tens[..3], BPF_ANY),
        Err(MapError::InvalidArgument("one value per CPU"))
    );
}

#[test]
fn queue_and_stack_are_popped_and_pushed_by_the_host() {
    if !kvm_available("queue_and_stack_are_popped_and_pushed_by_the_host") {
        return;
    }
    let sandbox = setup_sandbox(1, &[QUEUE_STACK]);
    let fifo = map(&sandbox, "fifo");
    let lifo = map(&sandbox, "lifo");
    let value = |v: Option<Vec<u8>>| v.map(|v| u32_at(&v, 0));
    for v in 7..=9u32 {
        fifo.push(&v.to_le_bytes(), BPF_ANY).unwrap();
        lifo.push(&v.to_le_bytes(), BPF_ANY).unwrap();
    }
    assert_eq!(value(fifo.peek().unwrap()), Some(7));
    assert_eq!(value(lifo.peek().unwrap()), Some(9));
    // A lookup peeks, as bpf(BPF_MAP_LOOKUP_ELEM) does.
    assert_eq!(value(lifo.lookup(&[]).unwrap()), Some(9));
    let drain = |m: &MapHandle<'_>| -> Vec<u32> {
        std::iter::from_fn(|| value(m.pop().unwrap())).collect()
    };
    assert_eq!(drain(&fifo), [7, 8, 9]);
    assert_eq!(drain(&lifo), [9, 8, 7]);
    assert_eq!(fifo.pop().unwrap(), None);
    assert_eq!(fifo.peek().unwrap(), None);
    assert_eq!(fifo.keys(), Err(MapError::Unsupported));
    assert_eq!(fifo.delete(&[]), Err(MapError::Unsupported));

    // Full: E2BIG, unless BPF_EXIST drops the oldest.
    for v in 1..=4u32 {
        fifo.push(&v.to_le_bytes(), BPF_ANY).unwrap();
    }
    assert_eq!(fifo.push(&5u32.to_le_bytes(), BPF_ANY), Err(MapError::Full));
    fifo.push(&5u32.to_le_bytes(), BPF_EXIST).unwrap();
    assert_eq!(drain(&fifo), [2, 3, 4, 5]);

    // The program pops what the host pushed: 10 and 11 go first, so its
    // own 3 and 4 do not fit, and its BPF_EXIST push of 5 drops 10.
    for v in [10u32, 11] {
        fifo.push(&v.to_le_bytes(), BPF_ANY).unwrap();
    }
    let (popped, out) = run(&sandbox, "queue_stack", 0, &[0; 72]);
    assert_eq!(popped, 8);
    assert_eq!(u32_at(&out, 16), 11, "peek of the queue");
    let queue: Vec<u32> = (0..4).map(|i| u32_at(&out, 40 + 4 * i)).collect();
    assert_eq!(queue, [11, 1, 2, 5]);
    // And the host pops what the program left: nothing.
    assert_eq!(fifo.pop().unwrap(), None);
    assert_eq!(
        fifo.push(&[0; 3], BPF_ANY).unwrap_err().to_string(),
        "Invalid argument: value is not value_size bytes"
    );
}

#[test]
fn tail_call_slots_name_programs_and_host_changes_redirect_chains() {
    if !kvm_available("tail_call_slots_name_programs_and_host_changes_redirect_chains") {
        return;
    }
    let sandbox = setup_sandbox(1, &[TAILCALL]);
    let jump = map(&sandbox, "jump");
    let program = |name| Slot::Program(sandbox.find_program(name).unwrap());
    let slots: Vec<(u32, Slot)> = jump
        .slots()
        .unwrap()
        .into_iter()
        .map(|(k, s)| (u32_at(&k, 0), s))
        .collect();
    assert_eq!(
        slots,
        [
            (0, program("second")),
            (1, program("third")),
            (2, program("forever"))
        ]
    );
    assert_eq!(jump.slot(&u32_key(3)).unwrap(), None);
    // struct chain { n, trace[7] }: the return value, n, the trace.
    let chain = || {
        let (ret, out) = run(&sandbox, "chain", 0, &[0; 32]);
        let n = u32_at(&out, 0);
        let trace: Vec<u32> = (0..n.min(7) as usize)
            .map(|i| u32_at(&out, 4 + 4 * i))
            .collect();
        (ret, n, trace)
    };
    assert_eq!(chain(), (4, 4, vec![1, 2, 3, 99]));
    // Emptied, `second`'s tail call falls through.
    jump.clear_slot(&u32_key(1)).unwrap();
    assert_eq!(chain(), (-2, 2, vec![1, 2]));
    assert_eq!(jump.clear_slot(&u32_key(1)), Err(MapError::NotFound));
    // `forever` in slot 1: tail calls 1 and 2 reach it, 3 to 33 repeat it.
    let forever = sandbox.find_program("forever").unwrap();
    jump.set_program(&u32_key(1), forever).unwrap();
    assert_eq!(
        jump.slot(&u32_key(1)).unwrap(),
        Some(Slot::Program(forever))
    );
    let (ret, n, trace) = chain();
    assert_eq!((ret, n), (2 + 32, 2 + 32));
    assert_eq!(trace[..2], [1, 2]);
    jump.set_program(&u32_key(1), sandbox.find_program("third").unwrap())
        .unwrap();
    assert_eq!(chain(), (4, 4, vec![1, 2, 3, 99]));
    assert_eq!(jump.set_program(&u32_key(4), forever), Err(MapError::Full));
    assert_eq!(
        jump.lookup(&u32_key(0)).unwrap_err().to_string(),
        "Invalid argument: slot map: read its slots"
    );
    assert_eq!(
        jump.update(&u32_key(0), &[0; 4], BPF_ANY)
            .unwrap_err()
            .to_string(),
        "Invalid argument: slot map: use set_program or set_inner_map"
    );
}

#[test]
fn map_in_map_slots_are_replaced_with_compatible_maps_only() {
    if !kvm_available("map_in_map_slots_are_replaced_with_compatible_maps_only") {
        return;
    }
    let sandbox = setup_sandbox(1, &[MAP_IN_MAP, WORDCOUNT]);
    let (first, second) = (map_id(&sandbox, "first"), map_id(&sandbox, "second"));
    let by_index = map(&sandbox, "by_index");
    let by_id = map(&sandbox, "by_id");
    assert_eq!(by_index.slot(&u32_key(0)).unwrap(), Some(Slot::Map(first)));
    assert_eq!(by_index.slot(&u32_key(1)).unwrap(), Some(Slot::Map(second)));
    let mut slots = by_id.slots().unwrap();
    slots.sort_by_key(|(k, _)| u32_at(k, 0));
    assert_eq!(
        slots,
        [
            (u32_key(7).to_vec(), Slot::Map(second)),
            (u32_key(9).to_vec(), Slot::Map(first))
        ]
    );
    assert_eq!(by_id.slot(&u32_key(8)).unwrap(), None);
    assert_eq!(by_index.info().inner().unwrap().max_entries(), 4);

    // struct mim_args { outer, key, value, old }.
    let args = |outer: u32, key: u32, value: u64| {
        [
            &outer.to_le_bytes()[..],
            &key.to_le_bytes(),
            &value.to_le_bytes(),
            &[0; 8],
        ]
        .concat()
    };
    // `second` in slot 0 too: a store through slot 0 lands in `second`.
    by_index.set_inner_map(&u32_key(0), second).unwrap();
    assert_eq!(by_index.slot(&u32_key(0)).unwrap(), Some(Slot::Map(second)));
    assert_eq!(run(&sandbox, "store_by_index", 0, &args(0, 2, 42)).0, 0);
    assert_eq!(run(&sandbox, "load_second", 0, &args(0, 2, 0)).0, 42);
    assert_eq!(
        map(&sandbox, "first").lookup(&u32_key(2)).unwrap(),
        Some(0u64.to_le_bytes().to_vec())
    );

    // Maps that do not match the inner definition are refused, and the
    // slot keeps its map.
    for wrong in [
        map_id(&sandbox, "counts"),
        by_id.id(),
        map_id(&sandbox, "by_index"),
    ] {
        assert_eq!(
            by_index
                .set_inner_map(&u32_key(0), wrong)
                .unwrap_err()
                .to_string(),
            "Invalid argument: map does not match the inner map definition"
        );
    }
    assert_eq!(by_index.slot(&u32_key(0)).unwrap(), Some(Slot::Map(second)));

    // A new key of the hash of maps, and one emptied.
    by_id.set_inner_map(&u32_key(8), first).unwrap();
    let load_by_id = |outer| run(&sandbox, "load_by_id", 0, &args(outer, 2, 0)).0;
    assert_eq!(load_by_id(8), 0);
    assert_eq!(load_by_id(7), 42);
    by_id.clear_slot(&u32_key(7)).unwrap();
    assert_eq!(load_by_id(7), -1);
    assert_eq!(
        map(&sandbox, "counts")
            .set_inner_map(&u32_key(0), first)
            .unwrap_err()
            .to_string(),
        "Invalid argument: not a map of maps"
    );
    assert_eq!(
        map(&sandbox, "first").slot(&u32_key(0)),
        Err(MapError::Unsupported)
    );
}

/// The value of global data map `section`.
fn section_bytes(sandbox: &Sandbox, section: &str) -> Vec<u8> {
    map(sandbox, section).lookup(&u32_key(0)).unwrap().unwrap()
}

#[test]
fn global_data_is_read_and_written_by_the_host() {
    if !kvm_available("global_data_is_read_and_written_by_the_host") {
        return;
    }
    let object = Object::parse(KNOBS).unwrap();
    let sandbox = setup_sandbox(1, &[KNOBS]);
    let var = |name: &str| {
        let v = object.variables().iter().find(|v| v.name == name).unwrap();
        (v.section.clone(), v.offset as usize)
    };
    assert_eq!(run(&sandbox, "scale", 0, &21u64.to_le_bytes()).0, 42);
    let (bss, last) = var("last");
    assert_eq!(bss, ".bss");
    assert_eq!(u64_of(&section_bytes(&sandbox, &bss)[last..]), 42);
    let (stats, runs) = var("runs");
    assert_eq!(u64_of(&section_bytes(&sandbox, &stats)[runs..]), 1);

    // The host's write is what the program increments.
    let mut bytes = section_bytes(&sandbox, &stats);
    bytes[runs..runs + 8].copy_from_slice(&1000u64.to_le_bytes());
    map(&sandbox, &stats)
        .update(&u32_key(0), &bytes, BPF_ANY)
        .unwrap();
    run(&sandbox, "scale", 0, &1u64.to_le_bytes());
    assert_eq!(u64_of(&section_bytes(&sandbox, &stats)[runs..]), 1001);

    // .rodata is readable, but frozen for the host too.
    let (rodata, multiplier) = var("multiplier");
    let rodata_map = map(&sandbox, &rodata);
    assert!(rodata_map.info().is_global_data());
    assert_ne!(rodata_map.def().map_flags() & flags::RDONLY, 0);
    let mut bytes = section_bytes(&sandbox, &rodata);
    assert_eq!(u32_at(&bytes, multiplier), 2);
    bytes[multiplier..multiplier + 4].copy_from_slice(&5u32.to_le_bytes());
    assert_eq!(
        rodata_map.update(&u32_key(0), &bytes, BPF_ANY),
        Err(MapError::ReadOnly)
    );
    assert_eq!(run(&sandbox, "scale", 0, &21u64.to_le_bytes()).0, 42);

    // .data of another object, set before its program runs.
    let mut sandbox = sandbox;
    sandbox
        .load_object(&Object::parse(GLOBALS).unwrap(), HelperSet::Standard)
        .unwrap();
    let globals = Object::parse(GLOBALS).unwrap();
    let calls = globals
        .variables()
        .iter()
        .find(|v| v.name == "calls")
        .unwrap();
    let data = sandbox
        .maps()
        .filter(|m| m.name() == calls.section)
        .last()
        .unwrap();
    let mut bytes = data.lookup(&u32_key(0)).unwrap().unwrap();
    let at = calls.offset as usize;
    assert_eq!(u64_of(&bytes[at..]), 100);
    bytes[at..at + 8].copy_from_slice(&500u64.to_le_bytes());
    data.update(&u32_key(0), &bytes, BPF_ANY).unwrap();
    let (_, _) = run(&sandbox, "globals", 0, &0u32.to_le_bytes());
    let bytes = data.lookup(&u32_key(0)).unwrap().unwrap();
    assert_eq!(u64_of(&bytes[at..]), 501);
}

/// The message of the error `r` must be.
fn message<T: std::fmt::Debug>(r: Result<T, MapError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn key_and_value_sizes_are_checked() {
    if !kvm_available("key_and_value_sizes_are_checked") {
        return;
    }
    let sandbox = setup_sandbox(2, &[WORDCOUNT, PERCPU]);
    let counts = map(&sandbox, "counts");
    let bad_key = "Invalid argument: key is not key_size bytes";
    let bad_value = "Invalid argument: value is not value_size bytes";
    assert_eq!(message(counts.lookup(&[0; 15])), bad_key);
    assert_eq!(message(counts.lookup(&[0; 17])), bad_key);
    assert_eq!(message(counts.delete(&[0; 4])), bad_key);
    assert_eq!(message(counts.update(&[0; 4], &[0; 8], BPF_ANY)), bad_key);
    assert_eq!(
        message(counts.update(&word("a"), &[0; 4], BPF_ANY)),
        bad_value
    );
    assert_eq!(
        message(counts.update(&word("a"), &[0; 9], BPF_ANY)),
        bad_value
    );
    assert_eq!(
        message(counts.slot(&word("a"))),
        "Operation not supported by this map type"
    );
    let hits = map(&sandbox, "hits");
    assert_eq!(
        message(hits.update_percpu(&u32_key(0), &[&[0; 8], &[0; 4]], BPF_ANY)),
        bad_value
    );
    assert_eq!(message(hits.lookup_percpu(&[0; 8])), bad_key);
    // Nothing was stored by the refused calls.
    assert_eq!(counts.keys().unwrap(), Vec::<Vec<u8>>::new());
}

#[test]
fn iteration_and_inserts_are_bounded_by_max_entries() {
    if !kvm_available("iteration_and_inserts_are_bounded_by_max_entries") {
        return;
    }
    let sandbox = setup_sandbox(1, &[LEGACY_MAPS, LRU]);
    let totals = map(&sandbox, "totals");
    assert_eq!(totals.def().max_entries(), 32);
    for k in 0..32u32 {
        totals
            .update(&u32_key(k), &u64::from(k).to_le_bytes(), BPF_NOEXIST)
            .unwrap();
    }
    assert_eq!(
        totals.update(&u32_key(32), &[0; 8], BPF_ANY),
        Err(MapError::Full)
    );
    let entries = u64_entries(&totals);
    assert_eq!(entries.len(), 32);
    assert!(entries.iter().all(|(k, &v)| u64::from(u32_at(k, 0)) == v));
    // struct add_args { key, add }: a new key does not fit; an old one adds.
    let add = |key: u32, n: u32| {
        let args = [key.to_le_bytes(), n.to_le_bytes()].concat();
        run(&sandbox, "legacy_add", 0, &args).0
    };
    assert_eq!(add(40, 1), -1);
    assert_eq!(add(5, 10), 15);
    totals.delete(&u32_key(0)).unwrap();
    assert_eq!(add(40, 1), 1);
    assert_eq!(totals.keys().unwrap().len(), 32);

    // An LRU map evicts instead: never more than max_entries keys.
    let recent = map(&sandbox, "recent");
    for k in 1..=10u32 {
        recent
            .update(&u32_key(k), &u64::from(k * 10).to_le_bytes(), BPF_ANY)
            .unwrap();
    }
    let entries = u64_entries(&recent);
    assert_eq!(entries.len(), 4);
    assert!(entries.contains_key(&u32_key(10)[..]), "the newest stays");
    assert!(
        entries
            .iter()
            .all(|(k, &v)| u64::from(u32_at(k, 0) * 10) == v)
    );
}

#[test]
fn spin_locked_values_are_copied_around_their_lock() {
    if !kvm_available("spin_locked_values_are_copied_around_their_lock") {
        return;
    }
    let sandbox = setup_sandbox(1, &[SPINLOCK]);
    let counter = map(&sandbox, "counter");
    // struct locked { lock, pad, count }.
    assert_eq!(counter.def().spin_lock_off(), Some(0));
    let value =
        |lock: u32, count: u64| [&lock.to_le_bytes()[..], &[0; 4], &count.to_le_bytes()].concat();
    counter
        .update(&u32_key(0), &value(0xdead, 40), shm::maps::BPF_F_LOCK)
        .unwrap();
    assert_eq!(run(&sandbox, "locked_add", 0, &2u32.to_le_bytes()).0, 42);
    assert_eq!(run(&sandbox, "locked_read", 0, &[]).0, 42);
    // The lock word reads as 0 and was never overwritten.
    assert_eq!(counter.lookup(&u32_key(0)).unwrap(), Some(value(0, 42)));
    let addr = counter.info().data();
    let mut lock = [0; 4];
    sandbox.memory().read(addr, &mut lock).unwrap();
    assert_eq!(lock, [0; 4]);
}

#[test]
fn for_each_sees_host_inserted_elements() {
    if !kvm_available("for_each_sees_host_inserted_elements") {
        return;
    }
    let sandbox = setup_sandbox(1, &[FOR_EACH]);
    let scores = map(&sandbox, "scores");
    scores
        .update(&u32_key(9), &1000u64.to_le_bytes(), BPF_ANY)
        .unwrap();
    // struct sums: array_sum, prefix_sum, hash_sum, hash_keys, visited x3.
    let (ret, out) = run(&sandbox, "for_each_sums", 0, &[0; 56]);
    assert_eq!(ret, 1654 + 1000);
    assert_eq!(u64_of(&out[24..]), 15 + 9, "hash_keys");
    assert_eq!(u64_of(&out[48..]), 6, "hash_visited");
    assert_eq!(scores.keys().unwrap().len(), 6);
}

#[test]
fn maps_size_needed_is_exactly_enough() {
    if !kvm_available("maps_size_needed_is_exactly_enough") {
        return;
    }
    for (name, bytes) in [
        ("wordcount", WORDCOUNT),
        ("percpu", PERCPU),
        ("map_in_map", MAP_IN_MAP),
        ("knobs", KNOBS),
        ("globals", GLOBALS),
        ("scribble", SCRIBBLE),
        ("tailcall", TAILCALL),
        ("queue_stack", QUEUE_STACK),
    ] {
        let object = Object::parse(bytes).unwrap();
        for cpus in [1, 3] {
            let needed = maps_size_needed(&object, cpus);
            assert!(needed > 0, "{name}");
            let load = |maps_size| {
                let mut sandbox = Sandbox::new(SandboxConfig {
                    cpus,
                    maps_size,
                    ..SandboxConfig::default()
                })
                .unwrap();
                sandbox
                    .load_object(&object, HelperSet::Standard)
                    .map(|_| ())
            };
            load(needed).unwrap_or_else(|e| panic!("{name} on {cpus} vCPUs: {e:?}"));
            if needed > 4096 {
                let err = load(needed - 4096).unwrap_err();
                assert!(
                    matches!(err, vmm::LoadError::Fit { region: "maps", .. }),
                    "{name}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn access_flags_limit_the_host_not_programs() {
    if !kvm_available("access_flags_limit_the_host_not_programs") {
        return;
    }
    let sandbox = setup_sandbox(1, &[SCRIBBLE]);
    // BPF_F_WRONLY: the host writes, programs read; the host cannot.
    let secret = map(&sandbox, "secret");
    secret
        .update(&u32_key(0), &42u64.to_le_bytes(), BPF_ANY)
        .unwrap();
    assert_eq!(run(&sandbox, "read_secret", 0, &[]).0, 42);
    assert_eq!(message(secret.lookup(&u32_key(0))), "Map is write-only");
    assert_eq!(secret.keys(), Err(MapError::WriteOnly));
    assert_eq!(secret.entries(), Err(MapError::WriteOnly));
    // BPF_F_RDONLY: programs push, the host only peeks.
    let feed = map(&sandbox, "feed");
    assert_eq!(run(&sandbox, "feed_push", 0, &7u32.to_le_bytes()).0, 0);
    assert_eq!(feed.peek().unwrap(), Some(7u32.to_le_bytes().to_vec()));
    assert_eq!(message(feed.pop()), "Map is read-only");
    assert_eq!(feed.push(&[0; 4], BPF_ANY), Err(MapError::ReadOnly));
    assert_eq!(feed.update(&[], &[0; 4], BPF_ANY), Err(MapError::ReadOnly));
    assert_eq!(feed.peek().unwrap(), Some(7u32.to_le_bytes().to_vec()));
}
