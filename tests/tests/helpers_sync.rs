//! `bpf_spin_lock` / `bpf_spin_unlock` shared by vCPUs, and the no-op
//! kfuncs (`bpf_rcu_read_lock` and friends), in a real VM.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use helpers_vm::*;
use iced_x86::code_asm::*;
use integration_tests::kvm_available;
use std::time::Duration;
use vmm::{Call, Outcome};

const EINVAL: i64 = -22;

#[test]
fn a_spin_locked_counter_from_four_vcpus_ends_exact() {
    if !kvm_available("a_spin_locked_counter_from_four_vcpus_ends_exact") {
        return;
    }
    let cpus = 4;
    let iterations: u32 = 1_000_000;
    let sandbox = setup_sandbox(cpus);
    // The lock and the counter in the shared read-write data region, on
    // separate cache lines.
    let lock = sandbox.layout().data_start();
    let counter = lock + 64;
    sandbox.memory().zero(lock, 128).unwrap();
    let [spin_lock, spin_unlock] = ["bpf_spin_lock", "bpf_spin_unlock"].map(helper);
    let entry = load(&sandbox, |a| {
        let mut top = a.create_label();
        a.push(rbx).unwrap();
        a.mov(ebx, iterations).unwrap();
        a.set_label(&mut top).unwrap();
        emit_call(a, spin_lock, &[lock]);
        // A plain read-modify-write: exact only under the lock.
        a.mov(rcx, counter).unwrap();
        a.mov(rax, qword_ptr(rcx)).unwrap();
        a.inc(rax).unwrap();
        a.mov(qword_ptr(rcx), rax).unwrap();
        emit_call(a, spin_unlock, &[lock]);
        a.dec(ebx).unwrap();
        a.jnz(top).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    });
    let call = Call::new(entry).with_timeout(Duration::from_secs(60));
    for report in sandbox.call_on_all(&call) {
        let report = report.unwrap();
        assert_eq!(report.outcome, Outcome::Returned(0));
        assert_eq!(report.exits, 1, "locking stays in the guest");
    }
    let total: u64 = sandbox.memory().read_pod(counter).unwrap();
    assert_eq!(total, u64::from(iterations) * cpus as u64);
    let state: u32 = sandbox.memory().read_pod(lock).unwrap();
    assert_eq!(state, 0, "the lock is free at the end");
}

#[test]
fn a_misaligned_lock_is_einval_and_left_alone() {
    if !kvm_available("a_misaligned_lock_is_einval_and_left_alone") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let lock = sandbox.layout().data_start();
    sandbox.memory().write_pod(lock, &0u64).unwrap();
    for name in ["bpf_spin_lock", "bpf_spin_unlock"] {
        assert_eq!(call_helper(&sandbox, 0, name, &[lock + 2]) as i64, EINVAL);
        assert_eq!(call_helper(&sandbox, 0, name, &[0]) as i64, EINVAL);
    }
    assert_eq!(sandbox.memory().read_pod::<u64>(lock).unwrap(), 0);
    // An aligned lock is taken and released.
    assert_eq!(call_helper(&sandbox, 0, "bpf_spin_lock", &[lock]), 0);
    assert_eq!(sandbox.memory().read_pod::<u32>(lock).unwrap(), 1);
    assert_eq!(call_helper(&sandbox, 0, "bpf_spin_unlock", &[lock]), 0);
    assert_eq!(sandbox.memory().read_pod::<u32>(lock).unwrap(), 0);
}

#[test]
fn a_lock_never_released_meets_the_deadline() {
    if !kvm_available("a_lock_never_released_meets_the_deadline") {
        return;
    }
    let mut sandbox = setup_sandbox(1);
    let lock = sandbox.layout().data_start();
    sandbox.memory().write_pod(lock, &1u32).unwrap();
    let entry = load_helper_calls(&sandbox, "bpf_spin_lock", &[lock], 1);
    let call = Call::new(entry).with_timeout(Duration::from_millis(100));
    let report = sandbox.call(0, &call).unwrap();
    assert!(
        matches!(report.outcome, Outcome::DeadlineExceeded(_)),
        "{report:?}"
    );
    sandbox.reset().unwrap();
}

#[test]
fn rcu_and_preemption_kfuncs_exist_and_do_nothing() {
    if !kvm_available("rcu_and_preemption_kfuncs_exist_and_do_nothing") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let names = [
        "bpf_rcu_read_lock",
        "bpf_preempt_disable",
        "bpf_preempt_enable",
        "bpf_rcu_read_unlock",
    ];
    // Called in a row with a marker in rbx, which SysV functions keep.
    let addrs = names.map(helper);
    let entry = load(&sandbox, |a| {
        a.push(rbx).unwrap();
        a.mov(rbx, 0x1234_5678_u64).unwrap();
        for addr in addrs {
            emit_call(a, addr, &[]);
        }
        a.mov(rax, rbx).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    });
    assert_eq!(run(&sandbox, 0, entry), 0x1234_5678);
}
