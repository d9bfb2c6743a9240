//! Calling a program, and ending it early from a helper.
//!
//! Note [Unwinding]
//! Some helpers end the whole program at once, whatever the depth of
//! bpf-to-bpf calls: the bpf_conformance suite's "unwind" helper (ubpf's
//! unwind function) does, and so will `bpf_throw`-like exits. The program is
//! entered through `bpfvisor_call_program`, which saves every callee-saved
//! register on its own frame and records that frame's stack pointer in the
//! per-CPU block (`PerCpu::unwind_rsp`). To unwind, a helper reloads that
//! stack pointer and jumps to the trampoline's return path with the return
//! value in rax: the frames of the program and its subprograms are simply
//! abandoned, and the registers the runtime relies on come back from the
//! trampoline's frame, saved before the program could touch them.
//!
//! The trampoline also zeroes the per-CPU tail-call count, so that every
//! run starts with the kernel's full budget of tail calls.

use shm::percpu::{TAIL_CALL_CNT_OFFSET, UNWIND_RSP_OFFSET};

core::arch::global_asm!(
    ".section .text.bpfvisor_program, \"ax\"",
    // rdi = entry, rsi = ctx, rdx = ctx_len. Six pushes and the return
    // address leave rsp 8 bytes off 16-byte alignment; the `sub` restores
    // it for the program, which calls SSE-using helpers.
    ".global bpfvisor_call_program",
    "bpfvisor_call_program:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    sub rsp, 8",
    "    mov gs:[{unwind_rsp}], rsp",
    "    mov qword ptr gs:[{tail_call_cnt}], 0",
    "    mov rax, rdi",
    "    mov rdi, rsi",
    "    mov rsi, rdx",
    "    call rax",
    "bpfvisor_program_return:",
    "    add rsp, 8",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    "",
    // The conformance suite's helper 5: `unwind(a)` returns `a`, except
    // that 0 ends the program with return value 0.
    ".global bpfvisor_conformance_unwind",
    "bpfvisor_conformance_unwind:",
    "    mov rax, rdi",
    "    test rax, rax",
    "    jnz 2f",
    "    mov rsp, gs:[{unwind_rsp}]",
    "    jmp bpfvisor_program_return",
    "2:",
    "    ret",
    unwind_rsp = const UNWIND_RSP_OFFSET,
    tail_call_cnt = const TAIL_CALL_CNT_OFFSET,
);

unsafe extern "C" {
    /// Calls the program at `entry` with `ctx` and `ctx_len` as r1 and r2.
    fn bpfvisor_call_program(entry: u64, ctx: u64, ctx_len: u64) -> u64;
}

/// Runs the program at `entry` once and returns its r0.
///
/// # Safety
/// `entry` must be code that follows the SysV calling convention, as JIT
/// output does. Code that does not faults or loops; the trap path and the
/// host's deadline handle both.
pub unsafe fn call_program(entry: u64, ctx: u64, ctx_len: u64) -> u64 {
    // SAFETY: forwarded to the caller; the trampoline saves and restores
    // every callee-saved register itself.
    unsafe { bpfvisor_call_program(entry, ctx, ctx_len) }
}
