//! Iterating CPUs from a program (images/progs/cpus.bpf.c) through real
//! VMs: `bpfvisor_nr_cpus` is the sandbox's vCPU count, the bit iterator
//! over a CPU mask visits exactly the mask's vCPUs, and the in-program sum
//! of a PERCPU_ARRAY over them equals what runs on those vCPUs added.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::{kvm_available, run_named, run_returning};
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const CPUS: &[u8] = include_bytes!("../../images/progs/cpus.bpf.o");

fn setup_sandbox(cpus: usize) -> Sandbox {
    integration_tests::sandbox_with(cpus, &[CPUS])
}

/// `struct sum_args` after a `cpus_sum` run.
#[derive(Debug, PartialEq, Eq)]
struct Sum {
    nr_cpus: u32,
    visited: u64,
    visits: u32,
    err: i32,
    total: u64,
    total_all: u64,
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Runs `cpus_sum` on `cpu` over `mask`, or over every vCPU if `mask` is
/// `None`.
fn sum(sandbox: &Sandbox, cpu: usize, mask: Option<u64>) -> Sum {
    let mut args = mask.unwrap_or(0).to_le_bytes().to_vec();
    args.extend_from_slice(&u32::from(mask.is_none()).to_le_bytes());
    args.resize(48, 0);
    let (ret, out) = run_returning(sandbox, "cpus_sum", cpu, &args);
    let sum = Sum {
        nr_cpus: u32_at(&out, 12),
        visited: u64_at(&out, 16),
        visits: u32_at(&out, 24),
        err: u32_at(&out, 28) as i32,
        total: u64_at(&out, 32),
        total_all: u64_at(&out, 40),
    };
    // The program returns the total as an int.
    assert_eq!(ret as u32, sum.total as u32);
    sum
}

/// Runs `cpus_hit` on `cpu`, adding `by` to that vCPU's statistic.
fn hit(sandbox: &Sandbox, cpu: usize, by: u64) {
    let (ret, _) = run_returning(sandbox, "cpus_hit", cpu, &by.to_le_bytes());
    assert_eq!(ret, cpu as u64, "cpus_hit reports the vCPU it ran on");
}

#[test]
fn nr_cpus_is_the_sandboxs_vcpu_count() {
    if !kvm_available("nr_cpus_is_the_sandboxs_vcpu_count") {
        return;
    }
    for cpus in [1, 3] {
        let sandbox = setup_sandbox(cpus);
        for cpu in 0..cpus {
            let all = sum(&sandbox, cpu, None);
            assert_eq!(all.nr_cpus, cpus as u32);
            assert_eq!(all.visited, (1 << cpus) - 1);
            assert_eq!(all.visits, cpus as u32);
            assert_eq!(all.err, 0);
        }
    }
}

#[test]
fn full_mask_sum_is_the_total_of_runs_on_every_vcpu() {
    if !kvm_available("full_mask_sum_is_the_total_of_runs_on_every_vcpu") {
        return;
    }
    let sandbox = setup_sandbox(4);
    // vCPU i adds 10^i, twice for vCPU 2: each CPU's share stays visible.
    for (cpu, by) in [(0, 1), (1, 10), (2, 100), (3, 1000), (2, 100)] {
        hit(&sandbox, cpu, by);
    }
    let all = sum(&sandbox, 1, None);
    assert_eq!(
        all,
        Sum {
            nr_cpus: 4,
            visited: 0b1111,
            visits: 4,
            err: 0,
            total: 1211,
            total_all: 1211,
        }
    );
    // The host sees the same per-CPU values the program summed.
    let stats = sandbox.find_map("stats").unwrap();
    let values: Vec<u64> = stats
        .lookup_percpu(&0u32.to_le_bytes())
        .unwrap()
        .unwrap()
        .iter()
        .map(|v| u64_at(v, 0))
        .collect();
    assert_eq!(values, [1, 10, 200, 1000]);
}

#[test]
fn runs_on_every_vcpu_at_once_are_summed_in_the_program() {
    if !kvm_available("runs_on_every_vcpu_at_once_are_summed_in_the_program") {
        return;
    }
    let sandbox = setup_sandbox(4);
    let id = sandbox.find_program("cpus_hit").unwrap();
    // Each vCPU adds 3, 25 times over, all four at the same time.
    let by = 3u64.to_le_bytes();
    let input = ProgramInput {
        data: &by,
        repeat: 25,
        timeout: Some(Duration::from_secs(20)),
    };
    let runs = sandbox.run_program_on(id, &[0, 1, 2, 3], &input);
    for (cpu, run) in runs.into_iter().enumerate() {
        let report = run.unwrap().report;
        assert!(matches!(report.outcome, Outcome::Returned(r) if r == cpu as u64));
        assert_eq!(report.runs, 25);
    }
    let all = sum(&sandbox, 2, None);
    assert_eq!((all.visited, all.total, all.total_all), (0b1111, 300, 300));
    let two = sum(&sandbox, 0, Some(0b0110));
    assert_eq!((two.visited, two.visits, two.total), (0b0110, 2, 150));
}

#[test]
fn sparse_mask_visits_exactly_its_cpus() {
    if !kvm_available("sparse_mask_visits_exactly_its_cpus") {
        return;
    }
    let sandbox = setup_sandbox(4);
    for (cpu, by) in [(0, 1), (1, 10), (2, 100), (3, 1000)] {
        hit(&sandbox, cpu, by);
    }
    // (mask, CPUs visited, their sum); bits at or past nr_cpus (4) are
    // ignored.
    let cases = [
        (0b1010, 0b1010, 1010),
        (0b0001, 0b0001, 1),
        (0b1000, 0b1000, 1000),
        (0, 0, 0),
        (0b0101 | 1 << 4 | 1 << 40 | 1 << 63, 0b0101, 101),
        (u64::MAX << 4, 0, 0),
    ];
    for (mask, visited, total) in cases {
        let got = sum(&sandbox, 3, Some(mask));
        assert_eq!(got.visited, visited, "mask {mask:#x}");
        assert_eq!(got.visits, visited.count_ones(), "mask {mask:#x}");
        assert_eq!(got.err, 0, "mask {mask:#x}: CPUs out of order");
        assert_eq!(got.total, total, "mask {mask:#x}");
        assert_eq!(got.total_all, 1111);
    }
}

/// Runs `cpus_bits` on `sandbox`'s vCPU 0: the iterator's return, the
/// number of bits it produced and their sum.
fn bits(sandbox: &Sandbox, addr: u64, nr_words: u32, words: &[u64]) -> (i64, u32, u64) {
    // struct bits_args { addr, nr_words, count, ret, sum, words[4] }.
    let mut args = addr.to_le_bytes().to_vec();
    args.extend_from_slice(&nr_words.to_le_bytes());
    args.resize(32, 0);
    for word in words {
        args.extend_from_slice(&word.to_le_bytes());
    }
    args.resize(64, 0);
    let (ret, out) = run_returning(sandbox, "cpus_bits", 0, &args);
    assert_eq!(ret, 0);
    (u64_at(&out, 16) as i64, u32_at(&out, 12), u64_at(&out, 24))
}

#[test]
fn an_unreadable_mask_is_efault_not_a_trap() {
    if !kvm_available("an_unreadable_mask_is_efault_not_a_trap") {
        return;
    }
    let sandbox = setup_sandbox(1);
    // Page 0 and a non-canonical address are unmapped, for one word or
    // several.
    for (addr, nr_words) in [(8u64, 1), (0x8000_0000_0000_0000, 1), (4096 - 8, 2)] {
        assert_eq!(
            bits(&sandbox, addr, nr_words, &[]),
            (-14, 0, 0),
            "{addr:#x}"
        );
    }
    // The last word of vCPU 0's stack is readable, the guard page after it
    // not: a mask running into it is refused whole, as the kernel's copy
    // would be.
    let last = sandbox.layout().stack_top(0) - 8;
    assert_eq!(bits(&sandbox, last, 1, &[]).0, 0);
    assert_eq!(bits(&sandbox, last, 2, &[]), (-14, 0, 0));
    // NULL or no words: -EINVAL; more than 511 words: -E2BIG.
    assert_eq!(bits(&sandbox, 0, 0, &[]), (-22, 0, 0));
    assert_eq!(bits(&sandbox, 0, 512, &[u64::MAX; 4]), (-7, 0, 0));
}

#[test]
fn masks_of_several_words_give_every_set_bit() {
    if !kvm_available("masks_of_several_words_give_every_set_bit") {
        return;
    }
    let sandbox = setup_sandbox(1);
    assert_eq!(bits(&sandbox, 0, 2, &[1 << 3, 1 << 63]), (0, 2, 130));
    assert_eq!(bits(&sandbox, 0, 4, &[0, 0, 0, 1 << 1]), (0, 1, 193));
    assert_eq!(
        bits(&sandbox, 0, 4, &[u64::MAX; 4]),
        (0, 256, 255 * 256 / 2)
    );
    // Only the words asked for count.
    assert_eq!(bits(&sandbox, 0, 1, &[1, 1]), (0, 1, 0));
}

#[test]
fn a_loader_set_const_volatile_holds_the_cpu_count() {
    if !kvm_available("a_loader_set_const_volatile_holds_the_cpu_count") {
        return;
    }
    let mut sandbox = Sandbox::new(SandboxConfig {
        cpus: 2,
        ..SandboxConfig::default()
    })
    .unwrap();
    let mut object = Object::parse(CPUS).unwrap();
    object
        .set_variable("loader_nr_cpus", &(sandbox.nr_cpus() as u32).to_le_bytes())
        .unwrap();
    sandbox.load_object(&object, HelperSet::Standard).unwrap();
    assert_eq!(run_returning(&sandbox, "nr_cpus_rodata", 1, &[]).0, 2);
}

#[test]
fn iterating_cpus_makes_no_vm_exit() {
    if !kvm_available("iterating_cpus_makes_no_vm_exit") {
        return;
    }
    let sandbox = setup_sandbox(2);
    let id = sandbox.find_program("cpus_sum").unwrap();
    let mut args = 0u64.to_le_bytes().to_vec();
    args.extend_from_slice(&1u32.to_le_bytes());
    args.resize(48, 0);
    let exits = |repeat: u64| {
        let input = ProgramInput {
            data: &args,
            repeat,
            timeout: Some(Duration::from_secs(20)),
        };
        let report = sandbox.run_program(id, 0, &input).unwrap().report;
        assert!(matches!(report.outcome, Outcome::Returned(_)));
        assert_eq!(report.runs, repeat);
        report.exits
    };
    // A helper or kfunc that left the guest would cost an exit per run.
    assert_eq!(exits(100), exits(1));
    // A bad mask too stays in the guest.
    let mut bad = 8u64.to_le_bytes().to_vec();
    bad.extend_from_slice(&1u32.to_le_bytes());
    bad.resize(64, 0);
    let bad = run_named(&sandbox, "cpus_bits", 1, &bad);
    assert!(matches!(bad.report.outcome, Outcome::Returned(0)));
    assert_eq!(u64_at(&bad.data_out, 16) as i64, -14);
    assert_eq!(bad.report.exits, exits(1));
}
