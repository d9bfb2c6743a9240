//! Time, CPU and random-number helpers in a real VM: `bpf_ktime_get_ns`
//! and its boot/coarse forms on the host's monotonic clock,
//! `bpf_get_smp_processor_id`, `bpf_get_numa_node_id`,
//! `bpf_get_prandom_u32` — none leaving the guest.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use helpers_vm::*;
use iced_x86::code_asm::*;
use integration_tests::kvm_available;
use shm::percpu::PRNG_STATE_OFFSET;
use vmm::Call;
use vmm::clock::monotonic_ns;

const CLOCKS: [&str; 3] = [
    "bpf_ktime_get_ns",
    "bpf_ktime_get_boot_ns",
    "bpf_ktime_get_coarse_ns",
];

/// How far the guest's clock may stray from the host's: the host pairs
/// the TSC with its clock between two clock readings, whose midpoint is
/// off by up to half their distance — milliseconds if the host thread is
/// preempted in between on a loaded machine — and KVM reports the TSC
/// frequency in whole kHz. Errors in units or base are far larger.
const CLOCK_SLACK_NS: u64 = 5_000_000;

#[test]
fn clocks_read_the_hosts_monotonic_time() {
    if !kvm_available("clocks_read_the_hosts_monotonic_time") {
        return;
    }
    let sandbox = setup_sandbox(1);
    for clock in CLOCKS {
        let entry = load_helper_calls(&sandbox, clock, &[], 1);
        let before = monotonic_ns();
        let ns = run(&sandbox, 0, entry);
        let after = monotonic_ns();
        assert!(
            ns + CLOCK_SLACK_NS >= before && ns <= after + CLOCK_SLACK_NS,
            "{clock}: {ns} not within {before}..{after}"
        );
    }
}

#[test]
fn clocks_never_go_backwards_within_a_run() {
    if !kvm_available("clocks_never_go_backwards_within_a_run") {
        return;
    }
    let sandbox = setup_sandbox(1);
    // 30,000 readings cycling through the three clocks; the code counts
    // the readings lower than the one before, and returns that count in
    // the low 32 bits and (last - first) >> 10 in the high ones.
    let addrs = CLOCKS.map(helper);
    let entry = load(&sandbox, |a| {
        let mut top = a.create_label();
        let mut not_lower = a.create_label();
        a.push(rbx).unwrap(); // iterations left
        a.push(r12).unwrap(); // previous reading
        a.push(r13).unwrap(); // decreases seen
        a.push(r14).unwrap(); // first reading
        a.push(r15).unwrap(); // padding: keeps rsp 16-byte aligned
        emit_call(a, addrs[0], &[]);
        a.mov(r12, rax).unwrap();
        a.mov(r14, rax).unwrap();
        a.xor(r13d, r13d).unwrap();
        a.mov(ebx, 10_000).unwrap();
        a.set_label(&mut top).unwrap();
        for addr in addrs {
            emit_call(a, addr, &[]);
            a.cmp(rax, r12).unwrap();
            a.jae(not_lower).unwrap();
            a.inc(r13).unwrap();
            a.set_label(&mut not_lower).unwrap();
            not_lower = a.create_label();
            a.mov(r12, rax).unwrap();
        }
        a.dec(ebx).unwrap();
        a.jnz(top).unwrap();
        a.mov(rax, r12).unwrap();
        a.sub(rax, r14).unwrap();
        a.shr(rax, 10).unwrap();
        a.shl(rax, 32).unwrap();
        a.or(rax, r13).unwrap();
        a.pop(r15).unwrap();
        a.pop(r14).unwrap();
        a.pop(r13).unwrap();
        a.pop(r12).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    });
    let r0 = run(&sandbox, 0, entry);
    let (decreases, elapsed_us) = (r0 & 0xffff_ffff, r0 >> 32);
    assert_eq!(decreases, 0);
    assert!(elapsed_us > 0, "30,000 readings took no time");
}

#[test]
fn each_vcpu_reports_its_own_id_and_node_zero() {
    if !kvm_available("each_vcpu_reports_its_own_id_and_node_zero") {
        return;
    }
    let sandbox = setup_sandbox(3);
    let entry = load_helper_calls(&sandbox, "bpf_get_smp_processor_id", &[], 1);
    let call = Call::new(entry);
    let ids: Vec<u64> = sandbox
        .call_on_all(&call)
        .into_iter()
        .map(|r| match r.unwrap().outcome {
            vmm::Outcome::Returned(id) => id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [0, 1, 2]);
    for cpu in 0..3 {
        assert_eq!(call_helper(&sandbox, cpu, "bpf_get_numa_node_id", &[]), 0);
    }
}

/// This vCPU's generator state, as the host sees it.
fn prng_state(sandbox: &vmm::Sandbox, cpu: usize) -> u64 {
    let addr = sandbox.layout().percpu_block(cpu) + PRNG_STATE_OFFSET as u64;
    sandbox.memory().read_pod(addr).unwrap()
}

#[test]
fn prandom_steps_each_vcpus_own_generator() {
    if !kvm_available("prandom_steps_each_vcpus_own_generator") {
        return;
    }
    let sandbox = setup_sandbox(2);
    let seeds = [prng_state(&sandbox, 0), prng_state(&sandbox, 1)];
    assert!(
        seeds[0] != 0 && seeds[1] != 0 && seeds[0] != seeds[1],
        "{seeds:?}"
    );
    let entry = load_helper_calls(&sandbox, "bpf_get_prandom_u32", &[], 1);
    for cpu in 0..2 {
        let mut state = prng_state(&sandbox, cpu);
        for _ in 0..3 {
            let want = shm::random::next_u32(&mut state);
            assert_eq!(run(&sandbox, cpu, entry), u64::from(want), "cpu {cpu}");
            assert_eq!(prng_state(&sandbox, cpu), state);
        }
    }
}

#[test]
fn prandom_recovers_from_a_zeroed_state() {
    if !kvm_available("prandom_recovers_from_a_zeroed_state") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let addr = sandbox.layout().percpu_block(0) + PRNG_STATE_OFFSET as u64;
    sandbox.memory().write_pod(addr, &0u64).unwrap();
    let entry = load_helper_calls(&sandbox, "bpf_get_prandom_u32", &[], 100);
    let r0 = run(&sandbox, 0, entry);
    let mut state = 0;
    let mut want = 0;
    for _ in 0..100 {
        want = shm::random::next_u32(&mut state);
    }
    assert_eq!(r0, u64::from(want));
    assert_eq!(prng_state(&sandbox, 0), state);
}
