//! Global per-CPU data (`SEC(".percpu")`) in a real VM, with the clang-built
//! `percpu_data` sample: each vCPU has its own copy of the initial image,
//! the program reaches the running vCPU's copy, and the host reads and
//! writes each CPU's copy through the section's PERCPU_ARRAY map, with the
//! kernel's `BPF_F_CPU` / `BPF_F_ALL_CPUS` update flags.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::kvm_available;
use shm::maps::{BPF_ANY, BPF_F_ALL_CPUS, BPF_F_CPU, MapError, MapType};
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox};

const PERCPU_DATA: &[u8] = include_bytes!("../../images/progs/percpu_data.bpf.o");
const GLOBALS: &[u8] = include_bytes!("../../images/progs/globals.bpf.o");

/// The sample's section: counter @0, tag @8, arr[3] @12, pt {a, b} @24.
const SECTION_LEN: usize = 32;

fn setup_sandbox(cpus: usize) -> Sandbox {
    integration_tests::sandbox_with(cpus, &[PERCPU_DATA])
}

/// What one `percpu_bump` run reported: (cpu, tag, counter, arr_sum,
/// pair_sum) and its return value.
fn bump(sandbox: &Sandbox, cpu: usize) -> ([u64; 5], u64) {
    let (r0, out) = integration_tests::run_returning(sandbox, "percpu_bump", cpu, &[0; 24]);
    (decode(&out), r0)
}

fn decode(out: &[u8]) -> [u64; 5] {
    let u32_at = |off: usize| u64::from(u32::from_le_bytes(out[off..off + 4].try_into().unwrap()));
    [
        u32_at(0),
        u32_at(4),
        u64::from_le_bytes(out[8..16].try_into().unwrap()),
        u32_at(16),
        u32_at(20),
    ]
}

/// An image of the section with the given fields.
fn image(counter: u64, tag: u8, arr: [u32; 3], pt: [u32; 2]) -> Vec<u8> {
    let mut v = vec![0; SECTION_LEN];
    v[0..8].copy_from_slice(&counter.to_le_bytes());
    v[8] = tag;
    for (i, x) in arr.iter().enumerate() {
        v[12 + 4 * i..16 + 4 * i].copy_from_slice(&x.to_le_bytes());
    }
    v[24..28].copy_from_slice(&pt[0].to_le_bytes());
    v[28..32].copy_from_slice(&pt[1].to_le_bytes());
    v
}

fn copies(sandbox: &Sandbox) -> Vec<Vec<u8>> {
    let map = sandbox.find_map(".percpu").expect("a .percpu map");
    map.lookup_percpu(&0u32.to_le_bytes()).unwrap().unwrap()
}

#[test]
fn percpu_section_is_a_percpu_array_of_the_initial_image_on_every_cpu() {
    if !kvm_available("percpu_section_is_a_percpu_array_of_the_initial_image_on_every_cpu") {
        return;
    }
    let sandbox = setup_sandbox(3);
    let map = sandbox.find_map(".percpu").unwrap();
    let def = map.info().def();
    assert_eq!(def.map_type(), MapType::PercpuArray);
    assert_eq!(
        (def.value_size(), def.max_entries(), def.nr_cpus()),
        (32, 1, 3)
    );
    assert!(map.info().is_global_data());
    let initial = image(0, 7, [1, 2, 3], [10, 20]);
    assert_eq!(copies(&sandbox), vec![initial; 3]);
}

#[test]
fn all_cpus_run_bumps_each_cpus_own_copy() {
    if !kvm_available("all_cpus_run_bumps_each_cpus_own_copy") {
        return;
    }
    let sandbox = setup_sandbox(4);
    let id = sandbox.find_program("percpu_bump").unwrap();
    let input = ProgramInput {
        data: &[0; 24],
        repeat: 3,
        timeout: Some(Duration::from_secs(20)),
    };
    let runs = sandbox.run_program_on(id, &[0, 1, 2, 3], &input);
    for (cpu, run) in runs.into_iter().enumerate() {
        let run = run.unwrap();
        let c = cpu as u64;
        // The last of 3 runs: counter 3 * (cpu + 1), arr[0] = 1 + 3 * 7.
        assert_eq!(
            run.report.outcome,
            Outcome::Returned(3 * (c + 1)),
            "cpu {cpu}"
        );
        assert_eq!(decode(&run.data_out), [c, 7, 3 * (c + 1), 22 + 5, 30]);
    }
    // The host sees every CPU's copy.
    let expected: Vec<Vec<u8>> = (0..4)
        .map(|c| image(3 * (c + 1), 7, [22, 2, 3], [10, 20]))
        .collect();
    assert_eq!(copies(&sandbox), expected);
}

#[test]
fn smp_processor_id_is_the_chosen_vcpu_and_copies_stay_apart() {
    if !kvm_available("smp_processor_id_is_the_chosen_vcpu_and_copies_stay_apart") {
        return;
    }
    let sandbox = setup_sandbox(4);
    for cpu in [2, 0, 3, 2, 1, 2] {
        let (out, _) = bump(&sandbox, cpu);
        assert_eq!(out[0], cpu as u64, "bpf_get_smp_processor_id on vCPU {cpu}");
    }
    // CPU 2 ran three times, 0, 1 and 3 once each.
    let counters: Vec<u64> = copies(&sandbox)
        .iter()
        .map(|v| u64::from_le_bytes(v[0..8].try_into().unwrap()))
        .collect();
    assert_eq!(counters, [1, 2, 9, 4]);
}

#[test]
fn host_updates_reach_exactly_the_cpus_the_flags_name() {
    if !kvm_available("host_updates_reach_exactly_the_cpus_the_flags_name") {
        return;
    }
    let sandbox = setup_sandbox(4);
    let map = sandbox.find_map(".percpu").unwrap();
    let key = 0u32.to_le_bytes();
    // Every CPU: tag 2, pt {100, 200}.
    let all = image(0, 2, [1, 2, 3], [100, 200]);
    map.update(&key, &all, BPF_ANY | BPF_F_ALL_CPUS).unwrap();
    // CPU 1 only: counter 1000, tag 5, arr {0, 0, 0}.
    let one = image(1000, 5, [0, 0, 0], [1, 1]);
    map.update(&key, &one, BPF_F_CPU | (1 << 32)).unwrap();
    for cpu in 0..4 {
        let (out, r0) = bump(&sandbox, cpu);
        let c = cpu as u64;
        if cpu == 1 {
            assert_eq!(out, [1, 5, 1002, 5, 2]);
            assert_eq!(r0, 1002);
        } else {
            assert_eq!(out, [c, 2, c + 1, 3 + 5, 300], "cpu {cpu}");
        }
    }
    // Refused as the kernel refuses them; nothing changes.
    let before = copies(&sandbox);
    for flags in [
        BPF_F_CPU | (4 << 32),
        BPF_F_CPU | BPF_F_ALL_CPUS,
        BPF_F_ALL_CPUS | (1 << 32),
        1 << 32,
    ] {
        assert!(map.update(&key, &all, flags).is_err(), "flags {flags:#x}");
    }
    assert_eq!(copies(&sandbox), before);
    assert_eq!(
        map.update(&key, &all[..8], BPF_F_CPU),
        Err(MapError::InvalidArgument("value is not value_size bytes"))
    );
}

#[test]
fn cpu_flags_on_a_shared_map_are_refused() {
    if !kvm_available("cpu_flags_on_a_shared_map_are_refused") {
        return;
    }
    let mut sandbox = setup_sandbox(2);
    sandbox
        .load_object(&Object::parse(GLOBALS).unwrap(), HelperSet::Standard)
        .unwrap();
    let map = sandbox.find_map(".data").unwrap();
    let len = map.info().def().value_size() as usize;
    let key = 0u32.to_le_bytes();
    let before = map.lookup(&key).unwrap().unwrap();
    for flags in [BPF_F_CPU, BPF_F_ALL_CPUS, BPF_F_CPU | (1 << 32)] {
        assert_eq!(
            map.update(&key, &vec![0xaa; len], flags),
            Err(MapError::InvalidFlags),
            "flags {flags:#x}"
        );
    }
    assert_eq!(map.lookup(&key).unwrap().unwrap(), before);
    // Without either flag a per-CPU map's value goes to every CPU.
    let v = image(9, 9, [9, 9, 9], [9, 9]);
    let percpu = sandbox.find_map(".percpu").unwrap();
    percpu.update(&key, &v, BPF_ANY).unwrap();
    assert_eq!(copies(&sandbox), vec![v; 2]);
}

#[test]
fn reset_keeps_each_vcpu_on_its_own_copy() {
    if !kvm_available("reset_keeps_each_vcpu_on_its_own_copy") {
        return;
    }
    let mut sandbox = setup_sandbox(2);
    bump(&sandbox, 1);
    sandbox.reset().unwrap();
    // this_cpu_off is rewritten with the per-CPU block; the copies keep
    // what the programs left, as `.data` does.
    assert_eq!(bump(&sandbox, 1).1, 4);
    assert_eq!(bump(&sandbox, 0).1, 1);
}
