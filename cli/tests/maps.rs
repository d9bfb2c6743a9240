//! Every map sample of `images/progs` through the real `bpfvisor run`:
//! `--call` sequences (some on several vCPUs at once), `--set`,
//! `--dump-maps`, checked against the exact results each sample's header
//! comment states; and every run stays in the guest (its VM exits are
//! those of a helper-free program's run).
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::{bpfvisor, sample};

use integration_tests::kvm_available;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Output;
use std::sync::OnceLock;

fn output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// VM exits of one run of a helper-free program (`calls.bpf.o`'s
/// pythagoras): what any run that stays in the guest until it returns
/// takes.
fn baseline_exits() -> u64 {
    static EXITS: OnceLock<u64> = OnceLock::new();
    *EXITS.get_or_init(|| {
        let out = bpfvisor(&[
            "run",
            &sample("calls"),
            "--prog",
            "pythagoras",
            "--data",
            "0300000000000000 0400000000000000",
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", output(&out));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["retval"], 25, "{json}");
        json["exits"].as_u64().unwrap()
    })
}

/// `bpfvisor run SAMPLE ARGS --json`, which must succeed with every vCPU
/// run returning and leaving the guest no more than a helper-free run.
fn run_json(name: &str, args: &[&str]) -> Value {
    let object = sample(name);
    let mut all = vec!["run", object.as_str()];
    all.extend(args);
    all.push("--json");
    let out = bpfvisor(&all);
    assert_eq!(out.status.code(), Some(0), "{all:?}: {}", output(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    for call in calls(&json) {
        assert_eq!(call["outcome"], "returned", "{call}");
        assert_eq!(
            call["exits"].as_u64(),
            Some(baseline_exits()),
            "{name}: helpers and maps stay in the guest: {call}"
        );
    }
    json
}

fn calls(json: &Value) -> &[Value] {
    json["calls"].as_array().unwrap()
}

/// The low 32 bits of a run's r0, as the `int` the samples return.
fn ret32(call: &Value) -> i32 {
    call["retval"].as_u64().unwrap() as u32 as i32
}

fn data_out(call: &Value) -> Vec<u8> {
    hex::decode(call["data_out"].as_str().unwrap()).unwrap()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    u32_at(bytes, at) as i32
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    u64_at(bytes, at) as i64
}

fn le32(v: u32) -> String {
    hex::encode(v.to_le_bytes())
}

fn le64(v: u64) -> String {
    hex::encode(v.to_le_bytes())
}

/// The map named `name` of the dump.
fn map<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no map {name} in {json}"))
}

/// A map's entries as key -> value, hex.
fn entries(map: &Value) -> BTreeMap<String, String> {
    assert_eq!(map["error"], Value::Null, "{map}");
    map["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A map's entries as their BTF types read them: `key_fmt` and
/// `value_fmt` (`values_fmt` per CPU), in dump order.
fn typed_entries(map: &Value) -> Vec<(Value, Value)> {
    assert_eq!(map["error"], Value::Null, "{map}");
    map["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = match e.get("values_fmt") {
                Some(values) => values.clone(),
                None => e["value_fmt"].clone(),
            };
            (e["key_fmt"].clone(), value)
        })
        .collect()
}

/// A per-CPU map's entries as key -> each CPU's value as a u64.
fn percpu_entries(map: &Value) -> BTreeMap<String, Vec<u64>> {
    assert_eq!(map["error"], Value::Null, "{map}");
    map["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let values = e["values"].as_array().unwrap();
            let values = values
                .iter()
                .map(|v| u64_at(&hex::decode(v.as_str().unwrap()).unwrap(), 0))
                .collect();
            (e["key"].as_str().unwrap().to_owned(), values)
        })
        .collect()
}

/// A slot map's entries as key -> `program NAME` / `map NAME`.
fn slots(map: &Value) -> BTreeMap<String, String> {
    assert_eq!(map["error"], Value::Null, "{map}");
    map["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let slot = e["slot"].as_object().unwrap();
            let (kind, name) = slot.iter().next().unwrap();
            (
                e["key"].as_str().unwrap().to_owned(),
                format!("{kind} {}", name.as_str().unwrap()),
            )
        })
        .collect()
}

/// `struct word` of wordcount.bpf.c: 16 bytes, zero-padded.
fn word(w: &str) -> String {
    let mut bytes = w.as_bytes().to_vec();
    bytes.resize(16, 0);
    hex::encode(bytes)
}

#[test]
fn wordcount_counts_8_words_and_the_dump_shows_each_count() {
    if !kvm_available("wordcount_counts_8_words_and_the_dump_shows_each_count") {
        return;
    }
    let text = "the cat and the hat and the bat";
    let input = format!(
        "count_words={}{}",
        le32(text.len() as u32),
        hex::encode(text)
    );
    let json = run_json(
        "wordcount",
        &[
            "--call",
            &input,
            "--call",
            &format!("word_count={}", word("the")),
            "--call",
            &format!("word_count={}", word("dog")),
            "--dump-maps",
        ],
    );
    let [count, the, dog] = calls(&json) else {
        panic!("{json}")
    };
    assert_eq!(ret32(count), 8);
    assert_eq!(ret32(the), 3);
    assert_eq!(ret32(dog), 0);
    let counts = map(&json, "counts");
    assert_eq!(counts["type"], "HASH");
    assert_eq!(counts["key_size"], 16);
    assert_eq!(counts["value_size"], 8);
    assert_eq!(counts["max_entries"], 1024);
    let expected: BTreeMap<String, String> =
        [("the", 3), ("and", 2), ("cat", 1), ("hat", 1), ("bat", 1)]
            .into_iter()
            .map(|(w, n)| (word(w), le64(n)))
            .collect();
    assert_eq!(entries(counts), expected);
    // Read through the map's BTF: `struct word { char s[16]; }` keys as
    // their text, `__u64` counts as numbers.
    let mut typed = typed_entries(counts);
    typed.sort_by_key(|(k, _)| k.to_string());
    assert_eq!(
        typed,
        [("and", 2), ("bat", 1), ("cat", 1), ("hat", 1), ("the", 3)]
            .map(|(w, n)| (json!({ "s": w }), json!(n)))
    );

    // The text dump says the same, one element a line, as C reads it.
    let out = bpfvisor(&["run", &sample("wordcount"), "--call", &input, "--dump-maps"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", output(&out));
    assert!(
        stdout.starts_with("count_words returned 8 (0x8)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("map counts (HASH): key 16 bytes, value 8 bytes, max_entries 1024\n"),
        "{stdout}"
    );
    for line in [
        "  {s: \"the\"}: 3\n",
        "  {s: \"and\"}: 2\n",
        "  {s: \"cat\"}: 1\n",
    ] {
        assert!(stdout.contains(line), "{line:?} in {stdout}");
    }
    assert!(!stdout.contains(&word("the")), "no hex: {stdout}");
}

/// `struct lru_args` of lru.bpf.c.
fn lru_args(n: u32, touch_after: u32, touch: u32) -> String {
    format!(
        "{}{}{}{}",
        le32(n),
        le32(touch_after),
        le32(touch),
        "00".repeat(20)
    )
}

#[test]
fn lru_evicts_the_least_recently_used_keys() {
    if !kvm_available("lru_evicts_the_least_recently_used_keys") {
        return;
    }
    let json = run_json("lru", &["--data", &lru_args(6, 4, 1), "--dump-maps"]);
    let out = data_out(&calls(&json)[0]);
    let (count, failures, present) = (u32_at(&out, 12), u32_at(&out, 16), u64_at(&out, 24));
    // What any LRU guarantees: the newest key stays, at most 4 keys, and
    // an insertion evicts rather than fails.
    assert!(
        present & (1 << 6) != 0 && count <= 4 && failures == 0,
        "{json}"
    );
    // What a strict LRU keeps, and bpfvisor's clock keeps on one CPU
    // (shm::maps Note [LRU eviction]): {1, 4, 5, 6}, key 1 saved by its
    // lookup.
    assert_eq!((present, count, failures), (0x72, 4, 0));
    assert_eq!(ret32(&calls(&json)[0]), 4);
    let recent = map(&json, "recent");
    assert_eq!(recent["type"], "LRU_HASH");
    let expected: BTreeMap<String, String> = [1u32, 4, 5, 6]
        .into_iter()
        .map(|k| (le32(k), le64(u64::from(k) * 10)))
        .collect();
    assert_eq!(entries(recent), expected);
}

#[test]
fn queue_and_stack_keep_the_kernels_order() {
    if !kvm_available("queue_and_stack_keep_the_kernels_order") {
        return;
    }
    // Twice in one sandbox: the first run leaves both maps empty, so the
    // second gives the same results.
    let result = format!("queue_stack={}", "00".repeat(72));
    let json = run_json(
        "queue_stack",
        &["--call", &result, "--call", &result, "--dump-maps"],
    );
    for call in calls(&json) {
        assert_eq!(ret32(call), 8);
        let r = data_out(call);
        let pair = |at| (i32_at(&r, at), i32_at(&r, at + 4));
        assert_eq!(pair(0), (-7, -7), "push_full");
        assert_eq!(pair(8), (0, 0), "push_exist");
        assert_eq!(pair(16), (2, 5), "peek");
        assert_eq!(pair(24), (4, 4), "popped");
        assert_eq!(pair(32), (-2, -2), "pop_empty");
        let four = |at: usize| [0, 4, 8, 12].map(|i| u32_at(&r, at + i));
        assert_eq!(four(40), [2, 3, 4, 5], "queue");
        assert_eq!(four(56), [5, 4, 3, 2], "stack");
    }
    for (name, kind) in [("fifo", "QUEUE"), ("lifo", "STACK")] {
        let m = map(&json, name);
        assert_eq!(
            (m["type"].as_str(), m["max_entries"].as_u64()),
            (Some(kind), Some(4))
        );
        assert_eq!(m["entries"], serde_json::json!([]), "{m}");
    }
}

#[test]
fn tail_calls_follow_the_prog_array_filled_from_the_object() {
    if !kvm_available("tail_calls_follow_the_prog_array_filled_from_the_object") {
        return;
    }
    let zeroed = "00".repeat(32);
    let json = run_json(
        "tailcall",
        &[
            "--call",
            &format!("chain={zeroed}"),
            "--call",
            &format!("forever={zeroed}"),
            "--dump-maps",
        ],
    );
    let [chain, forever] = calls(&json) else {
        panic!("{json}")
    };
    assert_eq!(ret32(chain), 4);
    let c = data_out(chain);
    assert_eq!(u32_at(&c, 0), 4, "n");
    assert_eq!([4, 8, 12, 16].map(|at| u32_at(&c, at)), [1, 2, 3, 99]);
    assert_eq!(ret32(forever), 34);
    assert_eq!(u32_at(&data_out(forever), 0), 34);
    let jump = map(&json, "jump");
    assert_eq!(jump["type"], "PROG_ARRAY");
    let expected: BTreeMap<String, String> = [
        (le32(0), "program second".to_owned()),
        (le32(1), "program third".to_owned()),
        (le32(2), "program forever".to_owned()),
    ]
    .into();
    assert_eq!(slots(jump), expected);
    // `__uint(key_size, 4)`: an array's key is its index.
    let indices: Vec<&Value> = jump["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["key_fmt"])
        .collect();
    assert_eq!(indices, [0, 1, 2]);
}

/// `struct mim_args` of map_in_map.bpf.c.
fn mim_args(outer: u32, key: u32, value: u64) -> String {
    format!("{}{}{}{}", le32(outer), le32(key), le64(value), le64(0))
}

#[test]
fn a_store_through_one_map_of_maps_is_seen_through_the_other() {
    if !kvm_available("a_store_through_one_map_of_maps_is_seen_through_the_other") {
        return;
    }
    let json = run_json(
        "map_in_map",
        &[
            "--call",
            &format!("store_by_index={}", mim_args(1, 2, 42)),
            "--call",
            &format!("load_by_id={}", mim_args(7, 2, 0)),
            "--call",
            &format!("load_second={}", mim_args(0, 2, 0)),
            "--call",
            &format!("load_by_id={}", mim_args(9, 2, 0)),
            "--call",
            &format!("load_by_id={}", mim_args(8, 2, 0)),
            "--dump-maps",
        ],
    );
    let [store, by_id, second, first, missing] = calls(&json) else {
        panic!("{json}")
    };
    assert_eq!(ret32(store), 0);
    assert_eq!(u64_at(&data_out(store), 16), 0, "old");
    assert_eq!(ret32(by_id), 42);
    assert_eq!(u64_at(&data_out(by_id), 8), 42, "value");
    assert_eq!(ret32(second), 42);
    assert_eq!(ret32(first), 0);
    assert_eq!(ret32(missing), -1);
    let second = entries(map(&json, "second"));
    let expected: BTreeMap<String, String> = (0..4u32)
        .map(|k| (le32(k), le64(if k == 2 { 42 } else { 0 })))
        .collect();
    assert_eq!(second, expected);
    assert!(entries(map(&json, "first")).values().all(|v| *v == le64(0)));
    let by_index = map(&json, "by_index");
    assert_eq!(by_index["type"], "ARRAY_OF_MAPS");
    let expected: BTreeMap<String, String> = [
        (le32(0), "map first".to_owned()),
        (le32(1), "map second".to_owned()),
    ]
    .into();
    assert_eq!(slots(by_index), expected);
    let by_id = map(&json, "by_id");
    assert_eq!(by_id["type"], "HASH_OF_MAPS");
    let expected: BTreeMap<String, String> = [
        (le32(7), "map second".to_owned()),
        (le32(9), "map first".to_owned()),
    ]
    .into();
    assert_eq!(slots(by_id), expected);
}

/// `struct hit_args` / `struct sum_args` of percpu.bpf.c.
fn hit_args(key: u32) -> String {
    format!("{}{}", le32(key), "00".repeat(20))
}

fn sum_args(nr_cpus: u32, key: u32) -> String {
    format!("{}{}{}", le32(nr_cpus), le32(key), "00".repeat(16))
}

#[test]
fn per_cpu_counters_on_several_vcpus_at_once() {
    if !kvm_available("per_cpu_counters_on_several_vcpus_at_once") {
        return;
    }
    // per_key[3] is created by a run on one vCPU first: percpu_hit does
    // not retry an insertion another vCPU won (its BPF_NOEXIST update
    // fails and that run's count is lost, as in the kernel).
    let json = run_json(
        "percpu",
        &[
            "--call",
            &format!("percpu_hit@1={}", hit_args(3)),
            "--call",
            &format!("percpu_hit@0-2={}", hit_args(3)),
            "--call",
            &format!("percpu_sum@2={}", sum_args(3, 3)),
            "--dump-maps",
        ],
    );
    let runs = calls(&json);
    let cpus: Vec<(u64, u64)> = runs
        .iter()
        .map(|c| (c["call"].as_u64().unwrap(), c["cpu"].as_u64().unwrap()))
        .collect();
    assert_eq!(cpus, [(0, 1), (1, 0), (1, 1), (1, 2), (2, 2)]);
    for (run, mine) in runs[..4].iter().zip([1, 1, 2, 1]) {
        let out = data_out(run);
        assert_eq!(
            u64::from(u32_at(&out, 4)),
            run["cpu"].as_u64().unwrap(),
            "cpu"
        );
        assert_eq!((u64_at(&out, 8), u64_at(&out, 16)), (mine, mine), "{run}");
        assert_eq!(ret32(run), mine as i32);
    }
    // Four runs in all, whichever vCPUs ran them.
    let sum = data_out(&runs[4]);
    assert_eq!((u64_at(&sum, 8), u64_at(&sum, 16)), (4, 4));
    assert_eq!(ret32(&runs[4]), 4);
    let hits = map(&json, "hits");
    assert_eq!(hits["type"], "PERCPU_ARRAY");
    assert_eq!(percpu_entries(hits), [(le32(0), vec![1, 2, 1])].into());
    let per_key = map(&json, "per_key");
    assert_eq!(per_key["type"], "PERCPU_HASH");
    assert_eq!(percpu_entries(per_key), [(le32(3), vec![1, 2, 1])].into());
    // `__u32` keys and each CPU's `__u64`, as numbers.
    assert_eq!(typed_entries(per_key), [(json!(3), json!([1, 2, 1]))]);
    assert_eq!(typed_entries(hits), [(json!(0), json!([1, 2, 1]))]);

    // After r runs on one vCPU, mine = r; the sandbox has a vCPU for the
    // highest named, and the others' values stay 0.
    let json = run_json(
        "percpu",
        &[
            "--call",
            &format!("percpu_hit={}", hit_args(5)),
            "--call",
            &format!("percpu_hit@0,3={}", hit_args(5)),
            "--call",
            &format!("percpu_sum={}", sum_args(4, 5)),
            "--repeat",
            "5",
            "--dump-maps",
        ],
    );
    let rets: Vec<(i32, u64)> = calls(&json)
        .iter()
        .map(|r| (ret32(r), r["runs"].as_u64().unwrap()))
        .collect();
    assert_eq!(rets, [(5, 5), (10, 5), (5, 5), (15, 5)]);
    assert_eq!(u64_at(&data_out(&calls(&json)[3]), 16), 15, "key_total");
    for name in ["hits", "per_key"] {
        let key = if name == "hits" { 0 } else { 5 };
        assert_eq!(
            percpu_entries(map(&json, name)),
            [(le32(key), vec![10, 0, 0, 5])].into(),
            "{name}"
        );
    }
}

fn flow_args(flow: u32, remove: bool) -> String {
    format!("{}{}{}", le32(flow), le32(u32::from(remove)), le64(0))
}

#[test]
fn lru_per_cpu_flows_count_per_vcpu_evict_and_delete() {
    if !kvm_available("lru_per_cpu_flows_count_per_vcpu_evict_and_delete") {
        return;
    }
    let seen = format!("flow_seen@0={}", flow_args(1, false));
    let json = run_json(
        "flows",
        &[
            "--call",
            &seen,
            "--call",
            &seen,
            "--call",
            &seen,
            "--call",
            &format!("flow_seen@1={}", flow_args(1, false)),
            "--dump-maps",
        ],
    );
    let hits: Vec<(i32, u64)> = calls(&json)
        .iter()
        .map(|c| (ret32(c), u64_at(&data_out(c), 8)))
        .collect();
    assert_eq!(hits, [(0, 1), (0, 2), (0, 3), (0, 1)]);
    let flows = map(&json, "flows");
    assert_eq!(flows["type"], "LRU_PERCPU_HASH");
    assert_eq!(percpu_entries(flows), [(le32(1), vec![3, 1])].into());

    let remove = format!("flow_seen={}", flow_args(1, true));
    let json = run_json(
        "flows",
        &[
            "--call",
            &seen,
            "--call",
            &remove,
            "--call",
            &remove,
            "--dump-maps",
        ],
    );
    let rets: Vec<i32> = calls(&json).iter().map(ret32).collect();
    assert_eq!(rets, [0, 0, -2], "delete, then -ENOENT");
    assert_eq!(percpu_entries(map(&json, "flows")), BTreeMap::new());

    // 20 inserts into 8 entries: none fails, the newest stays.
    let json = run_json(
        "flows",
        &["--call", &format!("flow_fill={}", le32(20)), "--dump-maps"],
    );
    assert_eq!(ret32(&calls(&json)[0]), 0, "a full LRU map evicts");
    let held = percpu_entries(map(&json, "flows"));
    assert!((1..=8).contains(&held.len()), "{held:?}");
    assert!(held.contains_key(&le32(119)), "{held:?}");
    assert!(
        held.keys()
            .all(|k| (100..120).contains(&u32_at(&hex::decode(k).unwrap(), 0)))
    );
}

#[test]
fn for_each_map_elem_sums_arrays_and_hashes() {
    if !kvm_available("for_each_map_elem_sums_arrays_and_hashes") {
        return;
    }
    let json = run_json("for_each", &["--data", &"00".repeat(56), "--dump-maps"]);
    let call = &calls(&json)[0];
    assert_eq!(ret32(call), 1654);
    let s = data_out(call);
    let sums: Vec<i64> = (0..7).map(|i| i64_at(&s, i * 8)).collect();
    // array_sum, prefix_sum, hash_sum, hash_keys, then what the helper
    // returned: array_visited, prefix_visited, hash_visited.
    assert_eq!(sums, [140, 14, 1500, 15, 8, 4, 5]);
    let squares: BTreeMap<String, String> = (0..8u32)
        .map(|i| (le32(i), le64(u64::from(i * i))))
        .collect();
    assert_eq!(entries(map(&json, "squares")), squares);
    let scores: BTreeMap<String, String> = (1..=5u32)
        .map(|k| (le32(k), le64(u64::from(100 * k))))
        .collect();
    assert_eq!(entries(map(&json, "scores")), scores);
}

#[test]
fn a_spin_lock_keeps_four_vcpus_counts_exact() {
    if !kvm_available("a_spin_lock_keeps_four_vcpus_counts_exact") {
        return;
    }
    let (times, repeat) = (20_000u32, 5u64);
    let json = run_json(
        "spinlock",
        &[
            "--call",
            &format!("locked_add@0-3={}", le32(times)),
            "--call",
            "locked_read",
            "--repeat",
            &repeat.to_string(),
            "--dump-maps",
        ],
    );
    let runs = calls(&json);
    let total = 4 * u64::from(times) * repeat;
    assert_eq!(runs.len(), 5);
    // Whichever vCPU wrote last wrote the total.
    let last_written: Vec<u64> = runs[..4].iter().map(|r| ret32(r) as u64).collect();
    assert_eq!(last_written.iter().max(), Some(&total), "{last_written:?}");
    assert_eq!(ret32(&runs[4]) as u64, total);
    // struct locked: the lock, padding, then the count.
    let counter = entries(map(&json, "counter"));
    let value = hex::decode(&counter[&le32(0)]).unwrap();
    assert_eq!(u64_at(&value, 8), total);
    // Through BTF: the lock (released), then the fields by name.
    assert_eq!(
        typed_entries(map(&json, "counter")),
        [(
            json!(0),
            json!({ "lock": { "val": 0 }, "pad": 0, "count": total })
        )]
    );
    let out = bpfvisor(&[
        "run",
        &sample("spinlock"),
        "--call",
        &format!("locked_add={}", le32(3)),
        "--dump-maps",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "map counter (ARRAY): key 4 bytes, value 16 bytes, max_entries 1\n  \
             0: {lock: {val: 0}, pad: 0, count: 3}\n"
        ),
        "{stdout}"
    );
}

#[test]
fn legacy_map_definitions_hold_their_values() {
    if !kvm_available("legacy_map_definitions_hold_their_values") {
        return;
    }
    let add = |key: u32, n: u32| format!("legacy_add={}{}", le32(key), le32(n));
    let json = run_json(
        "legacy_maps",
        &[
            "--call",
            &add(5, 3),
            "--call",
            &add(5, 4),
            "--call",
            "legacy_calls",
            "--dump-maps",
        ],
    );
    let rets: Vec<i32> = calls(&json).iter().map(ret32).collect();
    assert_eq!(rets, [3, 7, 2]);
    assert_eq!(entries(map(&json, "totals")), [(le32(5), le64(7))].into());
    assert_eq!(entries(map(&json, "calls")), [(le32(0), le64(2))].into());
    // Legacy definitions have no types: hex only.
    assert_eq!(
        typed_entries(map(&json, "totals")),
        [(Value::Null, Value::Null)]
    );
}

#[test]
fn set_changes_const_volatile_knobs_before_load() {
    if !kvm_available("set_changes_const_volatile_knobs_before_load") {
        return;
    }
    let x = le64(21);
    let json = run_json("knobs", &["--data", &x]);
    assert_eq!(json["retval"], 42);
    let json = run_json(
        "knobs",
        &[
            "--data",
            &x,
            "--set",
            "multiplier=5",
            "--set",
            "bias=-3",
            "--dump-maps",
        ],
    );
    assert_eq!(json["retval"], 102);
    // The knobs in .rodata, the result in .bss, the run counted in
    // .data.stats.
    let rodata = map(&json, ".rodata");
    assert_eq!(rodata["global_data"], true);
    let rodata = hex::decode(&entries(rodata)[&le32(0)]).unwrap();
    assert_eq!(
        (u32_at(&rodata, 0), i64_at(&rodata, 8), rodata[16]),
        (5, -3, 0)
    );
    assert_eq!(entries(map(&json, ".bss")), [(le32(0), le64(102))].into());
    assert_eq!(
        entries(map(&json, ".data.stats")),
        [(le32(0), le64(1))].into()
    );
    // Each section's variables by name, as their types read.
    let typed = |name| typed_entries(map(&json, name));
    assert_eq!(
        typed(".rodata"),
        [(
            json!(0),
            json!({ "multiplier": 5, "bias": -3, "negate": 0 })
        )]
    );
    assert_eq!(typed(".bss"), [(json!(0), json!({ "last": 102 }))]);
    assert_eq!(typed(".data.stats"), [(json!(0), json!({ "runs": 1 }))]);
    let out = bpfvisor(&[
        "run",
        &sample("knobs"),
        "--data",
        &x,
        "--set",
        "bias=-3",
        "--dump-maps",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "map .rodata (ARRAY, global data): key 4 bytes, value 17 bytes, max_entries 1\n  \
         0: {multiplier: 2, bias: -3, negate: 0}\n",
        "  0: {last: 39}\n",
        "  0: {runs: 1}\n",
    ] {
        assert!(stdout.contains(line), "{line:?} in {stdout}");
    }
    // Negated, with the same values given as hex and in 0x form.
    let json = run_json(
        "knobs",
        &[
            "--data",
            &x,
            "--set",
            "multiplier=hex:05 00 00 00",
            "--set",
            "bias=-0x3",
            "--set",
            "negate=1",
        ],
    );
    assert_eq!(json["retval"].as_u64().unwrap() as i64, -102);
}

#[test]
fn bpf_loop_callbacks_static_and_global() {
    if !kvm_available("bpf_loop_callbacks_static_and_global") {
        return;
    }
    // add_index adds i, add_twice 2 * i, for i in 0..count.
    let json = run_json("callbacks", &["--data", &le32(10)]);
    assert_eq!(json["retval"], 45 + 90);
}

/// `struct loop_args` of loops.bpf.c.
fn loop_args(prog: &str, start: i32, end: i32, stop: i32) -> String {
    let args: Vec<u8> = [start, end, stop, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain([0; 16])
        .collect();
    format!("{prog}={}", hex::encode(args))
}

#[test]
fn bpf_loop_bpf_for_and_bpf_repeat_run_their_counts() {
    if !kvm_available("bpf_loop_bpf_for_and_bpf_repeat_run_their_counts") {
        return;
    }
    let json = run_json(
        "loops",
        &[
            "--call",
            &loop_args("loop_sum", 0, 1000, -1),
            "--call",
            &loop_args("loop_sum", 0, 1000, 9),
            "--call",
            &loop_args("for_sum", -5, 100, 0),
            "--call",
            &loop_args("repeat_count", 0, 12_345, 0),
            "--call",
            &loop_args("triangle", 0, 100, 0),
            "--call",
            &loop_args("iter_errors", 10, 0, 0),
        ],
    );
    // (ret, sum, count) of each.
    let results: Vec<(i32, i64, u64)> = calls(&json)
        .iter()
        .map(|c| {
            let a = data_out(c);
            (i32_at(&a, 12), i64_at(&a, 16), u64_at(&a, 24))
        })
        .collect();
    assert_eq!(
        results,
        [
            (1000, 499_500, 1000),
            (10, 45, 10),
            (0, (-5..100).sum(), 105),
            (0, 0, 12_345),
            (100, 0, 5050),
            (-22, 0, 0),
        ]
    );
}

#[test]
fn time_readings_name_the_vcpu_and_go_forward() {
    if !kvm_available("time_readings_name_the_vcpu_and_go_forward") {
        return;
    }
    let json = run_json(
        "time",
        &["--call", &format!("readings@1={}", "00".repeat(56))],
    );
    let r = data_out(&calls(&json)[0]);
    let [ns, boot, coarse, later] = [0, 8, 16, 24].map(|at| u64_at(&r, at));
    assert!(
        0 < ns && ns <= boot && boot <= coarse && coarse <= later,
        "{r:?}"
    );
    assert_eq!((u32_at(&r, 32), i32_at(&r, 36)), (1, 0), "cpu, node");
}

#[test]
fn string_helpers_format_compare_and_read() {
    if !kvm_available("string_helpers_format_compare_and_read") {
        return;
    }
    // number, bad_ptr (NULL: never mapped), name, then room for the
    // results filled with 0xee.
    let mut args = Vec::new();
    args.extend(12345u64.to_le_bytes());
    args.extend(0u64.to_le_bytes());
    args.extend(b"bpfvisor\0\0\0\0\0\0\0\0");
    args.resize(16 + 16 + 64 + 5 * 8 + 16 + 8, 0xee);
    let json = run_json("strings", &["--data", &hex::encode(&args)]);
    let out = data_out(&calls(&json)[0]);
    let text = "n=12345 hex=3039 name=bpfvisor";
    assert_eq!(
        &out[32..32 + text.len() + 1],
        format!("{text}\0").as_bytes()
    );
    assert_eq!(json["trace"], serde_json::json!([text]));
    let rets = [96, 104, 112, 120, 128].map(|at| i64_at(&out, at));
    // snprintf's length with the NUL, strncmp equal, both reads fine
    // (9 bytes with the NUL), and -EFAULT for the bad pointer.
    assert_eq!(rets, [text.len() as i64 + 1, 0, 0, 9, -14]);
    assert_eq!(&out[136..152], b"bpfvisor\0\xee\xee\xee\xee\xee\xee\xee");
    assert_eq!(u64_at(&out, 152), 0, "a failed read zeroes its destination");
}

/// `struct big_args` of big_map.bpf.c.
fn big_args(prog: &str, index: u32, value: u64) -> String {
    format!("{prog}={}{}{}", le32(index), le32(0), le64(value))
}

#[test]
fn a_map_larger_than_the_default_maps_region_loads() {
    if !kvm_available("a_map_larger_than_the_default_maps_region_loads") {
        return;
    }
    // 32 MiB of ARRAY storage: twice the default region.
    let last = (4 << 20) - 1;
    let json = run_json(
        "big_map",
        &[
            "--call",
            &big_args("big_store", last, 42),
            "--call",
            &big_args("big_load", last, 0),
            "--call",
            &big_args("big_load", 0, 0),
            "--call",
            &big_args("big_store", last + 1, 1),
        ],
    );
    let rets: Vec<i32> = calls(&json).iter().map(ret32).collect();
    assert_eq!(rets, [42, 42, 0, -1]);
}

#[test]
fn the_single_program_form_lists_its_run_in_calls() {
    if !kvm_available("the_single_program_form_lists_its_run_in_calls") {
        return;
    }
    let json = run_json(
        "maps",
        &["--data", "03000000", "--cpu", "2", "--repeat", "3"],
    );
    assert_eq!(json["retval"], 3);
    assert_eq!(json["cpu"], 2);
    assert_eq!(json["maps"], Value::Null, "no dump without --dump-maps");
    let [only] = calls(&json) else {
        panic!("{json}")
    };
    assert_eq!(only["call"], 0);
    for field in [
        "program", "section", "outcome", "retval", "runs", "data_out", "cpu", "exits",
    ] {
        assert_eq!(only[field], json[field], "{field}");
    }
}

#[test]
fn a_call_that_does_not_return_ends_the_sequence() {
    if !kvm_available("a_call_that_does_not_return_ends_the_sequence") {
        return;
    }
    // A trap: exit 4, and the second call never runs.
    let out = bpfvisor(&[
        "run",
        &sample("null_read"),
        "--call",
        "null_read",
        "--call",
        "null_read",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", output(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(calls(&json).len(), 1, "{json}");
    assert_eq!(json["outcome"], "trapped");

    // On two vCPUs at once, both are stopped at the deadline: exit 5, and
    // the text names each vCPU.
    let out = bpfvisor(&[
        "run",
        &sample("spin"),
        "--call",
        "spin@0-1",
        "--timeout",
        "200ms",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for cpu in [0, 1] {
        assert!(
            stderr.contains(&format!(
                "cpu {cpu}: error: spin ran past its deadline of 200ms and was stopped"
            )),
            "{stderr}"
        );
    }
}

#[test]
fn a_scribbled_map_reports_its_error_and_the_others_are_dumped() {
    if !kvm_available("a_scribbled_map_reports_its_error_and_the_others_are_dumped") {
        return;
    }
    // fill inserts keys 0..64 into `victim`; poke writes 0x00ffffff 24
    // bytes before key 0's value: its element's `next` link (a HASH
    // element is next, hash, free, ref, then the key rounded up to 8),
    // now an index past the pool.
    let poke = format!(
        "poke={}{}{}",
        le32(0),
        hex::encode((-24i32).to_le_bytes()),
        le32(0x00ff_ffff)
    );
    let json = run_json(
        "scribble",
        &[
            "--call",
            &format!("fill={}", le32(64)),
            "--call",
            &poke,
            "--dump-maps",
        ],
    );
    let rets: Vec<i32> = calls(&json).iter().map(ret32).collect();
    assert_eq!(rets, [64, 0]);
    let victim = map(&json, "victim");
    assert_eq!(victim["error"], "Map storage is corrupt", "{victim}");
    assert_eq!(victim["entries"], serde_json::json!([]));
    for name in ["big", "big_lru"] {
        assert!(entries(map(&json, name)).is_empty(), "{name}");
    }
    let out = bpfvisor(&[
        "run",
        &sample("scribble"),
        "--call",
        &format!("fill={}", le32(64)),
        "--call",
        &poke,
        "--dump-maps",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "map victim (HASH): key 4 bytes, value 8 bytes, max_entries 64\n  \
             error: Map storage is corrupt\n"
        ),
        "{stdout}"
    );
}

#[test]
fn bad_set_and_call_values_get_clear_errors() {
    // Malformed values: usage errors, before anything is read.
    for args in [
        &["--set", "multiplier"][..],
        &["--set", "multiplier=five"],
        &["--set", "multiplier=0x"],
        &["--set", "multiplier=18446744073709551616"],
        &["--set", "multiplier=hex:0g"],
        &["--call", "scale@"],
        &["--call", "scale@3-1"],
        &["--call", "scale@0,0"],
        &["--call", "scale@64"],
        &["--call", "scale=0"],
        &["--call", "=00"],
        &["--call", "scale", "--prog", "scale"],
        &["--call", "scale", "--cpu", "1"],
        &["--call", "scale", "--data", "00"],
    ] {
        let object = sample("knobs");
        let mut all = vec!["run", object.as_str()];
        all.extend(args);
        let out = bpfvisor(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", output(&out));
    }
    let out = bpfvisor(&["run", &sample("knobs"), "--call", "scale@1-0"]);
    assert!(
        output(&out).contains("CPU list `1-0`: range `1-0` is empty"),
        "{}",
        output(&out)
    );

    // What the object does not have: exit 3, as for --prog.
    let knobs = sample("knobs");
    let fails = |args: &[&str], message: &str| {
        let mut all = vec!["run", knobs.as_str()];
        all.extend(args);
        let out = bpfvisor(&all);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", output(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr), message, "{args:?}");
    };
    fails(
        &["--set", "scale=1"],
        "error: Cannot set global variable `scale`: No global variable is named `scale`; \
         the object has: multiplier (.rodata, 4 bytes), bias (.rodata, 8 bytes), \
         negate (.rodata, 1 bytes), runs (.data.stats, 8 bytes), last (.bss, 8 bytes)\n",
    );
    fails(
        &["--set", "negate=256"],
        "error: Cannot set global variable `negate`: 256 does not fit in a 1-byte variable\n",
    );
    fails(
        &["--set", "multiplier=-2147483649"],
        "error: Cannot set global variable `multiplier`: -2147483649 does not fit in a 4-byte variable\n",
    );
    fails(
        &["--set", "bias=hex:0100"],
        "error: Cannot set global variable `bias`: Global variable `bias` is 8 bytes, \
         but the value given is 2 bytes\n",
    );
    let out = bpfvisor(&["run", &knobs, "--call", "scale", "--call", "nope@1"]);
    assert_eq!(out.status.code(), Some(3), "{}", output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: Cannot load ")
            && stderr.contains("No program or section is named `nope`; the object has: scale"),
        "{stderr}"
    );
}

#[test]
fn an_arena_list_is_built_summed_and_dumped() {
    if !kvm_available("an_arena_list_is_built_summed_and_dumped") {
        return;
    }
    // struct list_args { u32 n; u32 pages; u64 head; u64 sum; }
    let args = |n: u32| format!("{}{}", le32(n), "00".repeat(20));
    let json = run_json(
        "arena_list",
        &[
            "--call",
            &format!("list_build={}", args(1000)),
            "--call",
            &format!("list_sum={}", args(0)),
            "--dump-maps",
        ],
    );
    let runs = calls(&json);
    assert_eq!(ret32(&runs[0]), 1000);
    assert_eq!(u32_at(&data_out(&runs[0]), 4), 16, "pages for nodes");
    assert_eq!(ret32(&runs[1]), 1000);
    assert_eq!(u64_at(&data_out(&runs[1]), 16), 500_500, "sum");
    let arena = map(&json, "arena");
    assert_eq!(arena["type"], "ARENA");
    let info = &arena["entries"][0]["arena"];
    assert_eq!(info["len"], 8192 * 4096);
    // 16 pages of nodes and the page holding the __arena globals.
    assert_eq!(info["allocated_pages"], 17, "{arena}");
    let head = u64_at(&data_out(&runs[0]), 8);
    let base = info["base"].as_str().unwrap().trim_start_matches("0x");
    let base = u64::from_str_radix(base, 16).unwrap();
    assert!((base..base + 8192 * 4096).contains(&head), "{head:#x}");
}
