//! `bpf_loop` and the numeric iterator kfuncs in a real VM: raw x86 plays
//! the JIT-compiled program and callback (SysV functions in the code
//! region), and every limit is the kernel's.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use helpers_vm::*;
use iced_x86::code_asm::*;
use integration_tests::kvm_available;
use shm::loops::BPF_MAX_LOOPS;
use shm::percpu::CPU_ID_OFFSET;
use vmm::Sandbox;

const E2BIG: i64 = -7;
const EINVAL: i64 = -22;

/// Loads a program that calls `bpf_loop(nr_loops, callback, ctx, flags)`
/// with `ctx` pointing at a u64 sum in scratch memory (zeroed first), and
/// a callback that adds its index to the sum, and returns 1 (break) when
/// the index equals `stop_at`. Returns the entry.
fn load_loop(sandbox: &Sandbox, nr_loops: u64, flags: u64, stop_at: u64) -> u64 {
    let sum = scratch(sandbox, 0);
    sandbox.memory().write_pod(sum, &0u64).unwrap();
    let bpf_loop = helper("bpf_loop");
    load(sandbox, |a| {
        let mut callback = a.create_label();
        let mut go_on = a.create_label();
        a.push(rbx).unwrap();
        a.mov(rdi, nr_loops).unwrap();
        a.lea(rsi, ptr(callback)).unwrap();
        a.mov(rdx, sum).unwrap();
        a.mov(rcx, flags).unwrap();
        a.mov(rax, bpf_loop).unwrap();
        a.call(rax).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
        // callback(index = rdi, ctx = rsi): clobbers what SysV allows.
        a.set_label(&mut callback).unwrap();
        a.add(qword_ptr(rsi), rdi).unwrap();
        a.xor(eax, eax).unwrap();
        a.mov(rdx, stop_at).unwrap();
        a.cmp(rdi, rdx).unwrap();
        a.jne(go_on).unwrap();
        a.mov(eax, 1).unwrap();
        a.set_label(&mut go_on).unwrap();
        a.mov(rcx, 0xdead_u64).unwrap();
        a.mov(r8, 0xdead_u64).unwrap();
        a.ret().unwrap();
    })
}

fn sum(sandbox: &Sandbox) -> u64 {
    sandbox.memory().read_pod(scratch(sandbox, 0)).unwrap()
}

#[test]
fn bpf_loop_calls_back_for_every_index() {
    if !kvm_available("bpf_loop_calls_back_for_every_index") {
        return;
    }
    let sandbox = setup_sandbox(1);
    for n in [0u64, 1, 10, 1000] {
        let entry = load_loop(&sandbox, n, 0, u64::MAX);
        assert_eq!(run(&sandbox, 0, entry), n, "{n} loops");
        assert_eq!(sum(&sandbox), n * n.saturating_sub(1) / 2, "{n} loops");
    }
}

#[test]
fn bpf_loop_stops_when_the_callback_says_so() {
    if !kvm_available("bpf_loop_stops_when_the_callback_says_so") {
        return;
    }
    let sandbox = setup_sandbox(1);
    // Stops after index 4: five calls, 0+1+2+3+4.
    let entry = load_loop(&sandbox, 100, 0, 4);
    assert_eq!(run(&sandbox, 0, entry), 5);
    assert_eq!(sum(&sandbox), 10);
    let entry = load_loop(&sandbox, 100, 0, 0);
    assert_eq!(run(&sandbox, 0, entry), 1);
}

#[test]
fn bpf_loop_has_the_kernels_limits() {
    if !kvm_available("bpf_loop_has_the_kernels_limits") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let max = u64::from(BPF_MAX_LOOPS);
    let entry = load_loop(&sandbox, max + 1, 0, u64::MAX);
    assert_eq!(run(&sandbox, 0, entry) as i64, E2BIG);
    let entry = load_loop(&sandbox, 10, 1, u64::MAX);
    assert_eq!(run(&sandbox, 0, entry) as i64, EINVAL);
    assert_eq!(sum(&sandbox), 0, "refused loops call nothing");
    // nr_loops is a u32: the upper half of r1 is ignored.
    let entry = load_loop(&sandbox, (1 << 32) | 3, 0, u64::MAX);
    assert_eq!(run(&sandbox, 0, entry), 3);
    // The most the kernel allows, all 8M calls made in the guest.
    let entry = load_loop(&sandbox, max, 0, u64::MAX);
    assert_eq!(run(&sandbox, 0, entry), max);
    assert_eq!(sum(&sandbox), max * (max - 1) / 2);
}

#[test]
fn bpf_loop_refuses_a_callback_outside_jit_code() {
    if !kvm_available("bpf_loop_refuses_a_callback_outside_jit_code") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let sum = scratch(&sandbox, 0);
    for callback in [0, helper("bpf_ktime_get_ns"), sum, u64::MAX] {
        let entry = load_helper_calls(&sandbox, "bpf_loop", &[5, callback, sum, 0], 1);
        assert_eq!(
            run(&sandbox, 0, entry) as i64,
            EINVAL,
            "callback {callback:#x}"
        );
    }
}

/// Loads code that runs `bpf_iter_num_new(it, start, end)` on an
/// iterator at scratch + 0, then `bpf_iter_num_next` until NULL, storing
/// every value it points at from scratch + 16 on (at most `limit`), then
/// `bpf_iter_num_destroy`. Returns new's result in the low 32 bits and the
/// count of values in the high ones.
fn load_iteration(sandbox: &Sandbox, start: i32, end: i32, limit: u32) -> u64 {
    let it = scratch(sandbox, 0);
    let [new, next, destroy] = [
        "bpf_iter_num_new",
        "bpf_iter_num_next",
        "bpf_iter_num_destroy",
    ]
    .map(helper);
    load(sandbox, |a| {
        let mut top = a.create_label();
        let mut done = a.create_label();
        a.push(rbx).unwrap(); // values stored
        a.push(r12).unwrap(); // new's result
        a.push(r13).unwrap(); // padding
        emit_call(a, new, &[it, start as u32 as u64, end as u32 as u64]);
        a.mov(r12d, eax).unwrap();
        a.xor(ebx, ebx).unwrap();
        a.set_label(&mut top).unwrap();
        emit_call(a, next, &[it]);
        a.test(rax, rax).unwrap();
        a.jz(done).unwrap();
        a.mov(ecx, dword_ptr(rax)).unwrap();
        a.mov(rdx, it + 16).unwrap();
        a.mov(dword_ptr(rdx + rbx * 4), ecx).unwrap();
        a.inc(ebx).unwrap();
        a.cmp(ebx, limit).unwrap();
        a.jb(top).unwrap();
        a.set_label(&mut done).unwrap();
        emit_call(a, destroy, &[it]);
        a.mov(rax, rbx).unwrap();
        a.shl(rax, 32).unwrap();
        a.or(rax, r12).unwrap();
        a.pop(r13).unwrap();
        a.pop(r12).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    })
}

/// Runs `load_iteration`: new's result and the values produced.
fn iterate(sandbox: &Sandbox, start: i32, end: i32) -> (i64, Vec<i32>) {
    let entry = load_iteration(sandbox, start, end, 64);
    let r0 = run(sandbox, 0, entry);
    let count = (r0 >> 32) as usize;
    let mut bytes = vec![0u8; count * 4];
    sandbox
        .memory()
        .read(scratch(sandbox, 0) + 16, &mut bytes)
        .unwrap();
    let values = bytes
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // After destroy, the iterator is all zeros.
    let it: u64 = sandbox.memory().read_pod(scratch(sandbox, 0)).unwrap();
    assert_eq!(it, 0);
    (i64::from(r0 as u32 as i32), values)
}

#[test]
fn iterator_kfuncs_produce_the_range() {
    if !kvm_available("iterator_kfuncs_produce_the_range") {
        return;
    }
    let sandbox = setup_sandbox(1);
    assert_eq!(iterate(&sandbox, 0, 5), (0, vec![0, 1, 2, 3, 4]));
    assert_eq!(iterate(&sandbox, -3, 1), (0, vec![-3, -2, -1, 0]));
    assert_eq!(iterate(&sandbox, 7, 7), (0, vec![]));
    assert_eq!(
        iterate(&sandbox, i32::MIN, i32::MIN + 2),
        (0, vec![i32::MIN, i32::MIN + 1])
    );
    assert_eq!(iterate(&sandbox, 5, 4), (EINVAL, vec![]));
    let too_many = BPF_MAX_LOOPS as i32 + 1;
    assert_eq!(iterate(&sandbox, 0, too_many), (E2BIG, vec![]));
}

#[test]
fn iterator_kfuncs_return_sign_extended_errors() {
    if !kvm_available("iterator_kfuncs_return_sign_extended_errors") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let it = scratch(&sandbox, 0);
    let r0 = call_helper(&sandbox, 0, "bpf_iter_num_new", &[it, 9, 2]);
    assert_eq!(r0 as i64, EINVAL);
    // Arguments are ints: the upper halves of r2 and r3 do not count.
    let r0 = call_helper(
        &sandbox,
        0,
        "bpf_iter_num_new",
        &[it, 0xffff_0000_0000_0001, 3],
    );
    assert_eq!(r0, 0);
    let state: [i32; 2] = sandbox
        .memory()
        .read_pod(it)
        .map(|v: u64| [v as u32 as i32, (v >> 32) as u32 as i32])
        .unwrap();
    assert_eq!(state, [0, 3], "cur = start - 1, end");
}

#[test]
fn vcpus_loop_at_once_in_their_own_contexts() {
    if !kvm_available("vcpus_loop_at_once_in_their_own_contexts") {
        return;
    }
    let sandbox = setup_sandbox(2);
    // Each vCPU loops 100,000 times with its own context; the callback adds
    // (index + cpu id) to it.
    let bpf_loop = helper("bpf_loop");
    let ctxs = [scratch(&sandbox, 0), scratch(&sandbox, 1)];
    for ctx in ctxs {
        sandbox.memory().write_pod(ctx, &0u64).unwrap();
    }
    let entry = load(&sandbox, |a| {
        let mut callback = a.create_label();
        a.push(rbx).unwrap();
        a.mov(rdi, 100_000u64).unwrap();
        a.lea(rsi, ptr(callback)).unwrap();
        // ctx: this vCPU's context buffer, from its per-CPU block.
        a.mov(
            rdx,
            qword_ptr(std::mem::offset_of!(shm::percpu::PerCpu, ctx_buf) as u64).gs(),
        )
        .unwrap();
        a.xor(ecx, ecx).unwrap();
        a.mov(rax, bpf_loop).unwrap();
        a.call(rax).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
        a.set_label(&mut callback).unwrap();
        a.add(rdi, qword_ptr(CPU_ID_OFFSET as u64).gs()).unwrap();
        a.add(qword_ptr(rsi), rdi).unwrap();
        a.xor(eax, eax).unwrap();
        a.ret().unwrap();
    });
    let call = vmm::Call::new(entry).with_timeout(std::time::Duration::from_secs(20));
    for report in sandbox.call_on_all(&call) {
        let report = report.unwrap();
        assert_eq!(report.outcome, vmm::Outcome::Returned(100_000));
        assert_eq!(report.exits, 1);
    }
    let n: u64 = 100_000;
    for (cpu, ctx) in ctxs.into_iter().enumerate() {
        let sum: u64 = sandbox.memory().read_pod(ctx).unwrap();
        assert_eq!(sum, n * (n - 1) / 2 + n * cpu as u64, "cpu {cpu}");
    }
}
