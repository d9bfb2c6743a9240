//! `bpfvisor run --cpus N --all-cpus` through the real binary on the
//! `percpu_data` sample: every vCPU runs at once, each reports its own
//! result, and `--dump-maps` shows each CPU's copy of the `.percpu`
//! variables.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::bpfvisor;

use integration_tests::kvm_available;
use serde_json::{Value, json};
use std::process::Output;

const PERCPU_DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../images/progs/percpu_data.bpf.o"
);
/// The sample's context, struct bump_args: 24 zero bytes.
const ZERO_ARGS: &str = "000000000000000000000000000000000000000000000000";

fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn all_cpus_reports_each_cpu_and_dump_shows_each_copy() {
    if !kvm_available("all_cpus_reports_each_cpu_and_dump_shows_each_copy") {
        return;
    }
    let out = bpfvisor(&[
        "run",
        PERCPU_DATA,
        "--cpus",
        "4",
        "--all-cpus",
        "--repeat",
        "2",
        "--data",
        ZERO_ARGS,
        "--json",
        "--dump-maps",
    ]);
    let json = json_of(&out);
    // Two runs on CPU c add 2 * (c + 1) to its counter, which it returns.
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{json}");
    for (c, result) in results.iter().enumerate() {
        assert_eq!(result["cpu"], json!(c));
        assert_eq!(result["retval"], json!(2 * (c + 1)));
        assert!(result["duration_ns"].as_u64().unwrap() > 0);
    }
    let maps = json["maps"].as_array().unwrap();
    let percpu = maps.iter().find(|m| m["name"] == ".percpu").unwrap();
    assert_eq!(percpu["type"], "PERCPU_ARRAY");
    let values = &percpu["entries"][0]["values_fmt"];
    let expected: Vec<Value> = (0..4)
        .map(|c| {
            json!({"counter": 2 * (c + 1), "tag": 7, "arr": [15, 2, 3],
                   "pt": {"a": 10, "b": 20}})
        })
        .collect();
    assert_eq!(values, &Value::Array(expected));
}

#[test]
fn all_cpus_text_output_names_each_cpu() {
    if !kvm_available("all_cpus_text_output_names_each_cpu") {
        return;
    }
    let out = bpfvisor(&[
        "run",
        PERCPU_DATA,
        "--cpus",
        "2",
        "--all-cpus",
        "--data",
        ZERO_ARGS,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("cpu 0: percpu_bump returned 1 (0x1)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("cpu 1: percpu_bump returned 2 (0x2)\n"),
        "{stdout}"
    );
}

#[test]
fn cpu_runs_on_the_chosen_vcpu_of_a_cpus_sized_sandbox() {
    if !kvm_available("cpu_runs_on_the_chosen_vcpu_of_a_cpus_sized_sandbox") {
        return;
    }
    let out = bpfvisor(&[
        "run",
        PERCPU_DATA,
        "--cpus",
        "4",
        "--cpu",
        "2",
        "--data",
        ZERO_ARGS,
        "--json",
    ]);
    let json = json_of(&out);
    assert_eq!(
        json["results"],
        json!([{"cpu": 2, "retval": 3,
        "duration_ns": json["results"][0]["duration_ns"]}])
    );
    // bump_args.cpu = bpf_get_smp_processor_id() = 2.
    assert_eq!(&json["data_out"].as_str().unwrap()[..8], "02000000");
}

#[test]
fn a_cpu_outside_cpus_is_refused() {
    let out = bpfvisor(&["run", PERCPU_DATA, "--cpus", "2", "--cpu", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("vCPU 3 is not in a sandbox of --cpus 2"),
        "{stderr}"
    );
    let out = bpfvisor(&["run", PERCPU_DATA, "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses --cpus 0");
}

#[test]
fn calls_on_some_cpus_change_exactly_their_copies() {
    if !kvm_available("calls_on_some_cpus_change_exactly_their_copies") {
        return;
    }
    let call = format!("percpu_bump@1,3={ZERO_ARGS}");
    let out = bpfvisor(&[
        "run",
        PERCPU_DATA,
        "--cpus",
        "4",
        "--call",
        &call,
        "--json",
        "--dump-maps",
    ]);
    let json = json_of(&out);
    let cpus: Vec<&Value> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["cpu"])
        .collect();
    assert_eq!(cpus, [&json!(1), &json!(3)]);
    let maps = json["maps"].as_array().unwrap();
    let percpu = maps.iter().find(|m| m["name"] == ".percpu").unwrap();
    let counters: Vec<&Value> = percpu["entries"][0]["values_fmt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["counter"])
        .collect();
    assert_eq!(counters, [&json!(0), &json!(2), &json!(0), &json!(4)]);
}

const PERCPU_SUM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../images/progs/percpu_sum.bpf.o"
);

/// sum_hits over `mask` on vCPU `cpu` after hits on 4 vCPUs: CPU c has
/// run `hit` c + 1 times. Returns (retval, visited, total, mine, missing).
fn sum_hits(mask: u64, cpu: u32) -> (u64, u64, u64, u64, u32) {
    let args = format!("{}{}", hex::encode(mask.to_le_bytes()), "00".repeat(32));
    let sum = format!("sum_hits@{cpu}={args}");
    let out = bpfvisor(&[
        "run", PERCPU_SUM, "--cpus", "4", "--call", "hit@0-3", "--call", "hit@1-3", "--call",
        "hit@2-3", "--call", "hit@3", "--call", &sum, "--json",
    ]);
    let json = json_of(&out);
    let last = json["calls"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exits"], 1, "no VM exit: {last}");
    let data = hex::decode(last["data_out"].as_str().unwrap()).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
    let missing = u32::from_le_bytes(data[32..36].try_into().unwrap());
    (
        last["retval"].as_u64().unwrap(),
        u64_at(8),
        u64_at(16),
        u64_at(24),
        missing,
    )
}

#[test]
fn a_program_sums_every_cpus_percpu_copy_through_the_cpu_iterator() {
    if !kvm_available("a_program_sums_every_cpus_percpu_copy_through_the_cpu_iterator") {
        return;
    }
    // All CPUs: 1 + 2 + 3 + 4 runs.
    assert_eq!(sum_hits(!0, 0), (4, 0b1111, 10, 1, 1));
    // A sparse mask: CPUs 1 and 3 only (2 + 4), asked from CPU 2.
    assert_eq!(sum_hits(0b1010, 2), (2, 0b1010, 6, 3, 1));
    // Bits past the sandbox's CPUs are not CPUs.
    assert_eq!(sum_hits(1 << 5 | 1, 3), (1, 0b1, 1, 4, 1));
}
