//! The map benchmark's sample (`images/progs/map_bench.bpf.o`, measured by
//! `tests/benches/maps.rs`) returns what its header states, so that the
//! bench measures programs that do the work they claim.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::kvm_available;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const MAP_BENCH: &[u8] = include_bytes!("../../images/progs/map_bench.bpf.o");
const KEYS: u32 = 64;
const LOOKUPS: [&str; 7] = [
    "baseline",
    "helper_call",
    "lookup_array",
    "lookup_array_helper",
    "lookup_percpu_array",
    "lookup_hash",
    "lookup_lru",
];
const UPDATES: [&str; 2] = ["update_array", "update_hash"];

/// Runs `name` once with `struct bench_args { n }`: (return value, sum).
fn run(sandbox: &Sandbox, name: &str, n: u32) -> (u64, u64) {
    let id = sandbox.find_program(name).unwrap();
    let mut args = [0u8; 16];
    args[..4].copy_from_slice(&n.to_le_bytes());
    let input = ProgramInput {
        data: &args,
        repeat: 1,
        timeout: Some(Duration::from_secs(10)),
    };
    let run = sandbox.run_program(id, 0, &input).unwrap();
    let Outcome::Returned(value) = run.report.outcome else {
        panic!("{name} did not return: {:?}", run.report.outcome);
    };
    let sum = u64::from_le_bytes(run.data_out[8..16].try_into().unwrap());
    (value, sum)
}

/// Every populated map holds k + 1 at key k, for k in 0..KEYS (per-CPU:
/// on vCPU 0, where setup ran).
fn assert_populated(sandbox: &Sandbox) {
    for k in 0..KEYS {
        let key = k.to_le_bytes();
        let value = (u64::from(k) + 1).to_le_bytes().to_vec();
        for map in ["array", "hash", "lru"] {
            let got = sandbox.find_map(map).unwrap().lookup(&key).unwrap();
            assert_eq!(got, Some(value.clone()), "{map}[{k}]");
        }
        let percpu = sandbox.find_map("percpu").unwrap();
        assert_eq!(percpu.lookup_percpu(&key).unwrap().unwrap()[0], value);
    }
    let hash = sandbox.find_map("hash").unwrap();
    assert_eq!(hash.keys().unwrap().len(), KEYS as usize);
}

#[test]
fn map_bench_programs_return_what_the_sample_states() {
    if !kvm_available("map_bench_programs_return_what_the_sample_states") {
        return;
    }
    let mut sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let object = Object::parse(MAP_BENCH).unwrap();
    sandbox.load_object(&object, HelperSet::Standard).unwrap();

    // Before setup: hash lookups miss and add nothing, arrays hold zeros,
    // and an update with BPF_EXIST of an absent key fails.
    assert_eq!(run(&sandbox, "lookup_hash", 100), (0, 0));
    assert_eq!(run(&sandbox, "lookup_lru", 100), (0, 0));
    assert_eq!(run(&sandbox, "lookup_array", 100), (100, 0));
    assert_eq!(run(&sandbox, "update_hash", 100), (0, 0));

    assert_eq!(run(&sandbox, "setup", 0).0, 4 * u64::from(KEYS));
    assert_populated(&sandbox);
    // n = 100: keys 0..63 then 0..35, values key + 1.
    for name in LOOKUPS.into_iter().chain(UPDATES) {
        assert_eq!(run(&sandbox, name, 100), (100, 2080 + 666), "{name}");
        assert_eq!(run(&sandbox, name, 0), (0, 0), "{name}, n = 0");
    }
    // The updates wrote back what setup wrote.
    assert_populated(&sandbox);
}
