//! Entry points the host points vCPUs at, and the exception path.
//!
//! Everything here runs at CPL 3 except `bpfvisor_exception_stubs` and
//! `bpfvisor_kernel_entry` (Note [Guest privilege levels] in
//! `shm::layout`).
//!
//! * `bpfvisor_dispatch_entry`: where every vCPU starts, and where it goes
//!   back to after a trap or an abort, on a fresh stack.
//! * `bpfvisor_abort_entry`: where the host sends a vCPU it stopped in the
//!   middle of a program (deadline). It reports through `ABORTED_PORT` and
//!   then serves the next request.
//! * `bpfvisor_exception_stubs`: 32 CPL 0 stubs, one per exception vector,
//!   [`shm::layout::EXCEPTION_STUB_STRIDE`] bytes apart (the host builds the
//!   IDT from that). Each pushes a zero error code when the CPU does not,
//!   then the vector.
//! * `bpfvisor_kernel_entry`: copies the CPU's exception frame into the
//!   per-CPU trap slots and `iretq`s straight back to CPL 3, into
//!   `bpfvisor_user_trap_entry` on the trap stack, with every general-purpose
//!   register as it was at the fault. It is a handful of instructions, no
//!   SSE: some hosts emulate CPL 0 code.
//! * `bpfvisor_user_trap_entry`: saves the registers into a
//!   [`crate::trap::TrapFrame`] and calls the Rust handler, which returns only
//!   when it fixed the fault up; then the registers, RFLAGS and the stack are
//!   restored and execution resumes at the (updated) trap rip.

use shm::layout::EXCEPTION_STUB_STRIDE;
use shm::percpu::{
    STACK_TOP_OFFSET, TRAP_CR2_OFFSET, TRAP_ERROR_CODE_OFFSET, TRAP_RFLAGS_OFFSET, TRAP_RIP_OFFSET,
    TRAP_RSP_OFFSET, TRAP_SCRATCH_OFFSET, TRAP_STACK_TOP_OFFSET, TRAP_VECTOR_OFFSET, USER_RFLAGS,
};
use shm::ports::{ABORTED_PORT, KERNEL_FAULT_PORT};

core::arch::global_asm!(
    ".section .text.bpfvisor_entry, \"ax\"",
    ".global bpfvisor_dispatch_entry",
    "bpfvisor_dispatch_entry:",
    "    mov rsp, gs:[{stack_top}]",
    "    xor ebp, ebp",
    "    call {dispatch_loop}",
    "    ud2",
    "",
    ".global bpfvisor_abort_entry",
    "bpfvisor_abort_entry:",
    "    mov rsp, gs:[{stack_top}]",
    "    mov dx, {aborted_port}",
    "    out dx, al",
    "    jmp bpfvisor_dispatch_entry",
    "",
    ".macro VECTOR_STUB vector, cpu_pushes_error_code",
    "    .balign {stride}, 0xcc",
    "    .if \\cpu_pushes_error_code == 0",
    "    push 0",
    "    .endif",
    "    push \\vector",
    "    jmp bpfvisor_kernel_entry",
    ".endm",
    "",
    ".balign {stride}, 0xcc",
    ".global bpfvisor_exception_stubs",
    "bpfvisor_exception_stubs:",
    "VECTOR_STUB 0, 0",
    "VECTOR_STUB 1, 0",
    "VECTOR_STUB 2, 0",
    "VECTOR_STUB 3, 0",
    "VECTOR_STUB 4, 0",
    "VECTOR_STUB 5, 0",
    "VECTOR_STUB 6, 0",
    "VECTOR_STUB 7, 0",
    "VECTOR_STUB 8, 1",
    "VECTOR_STUB 9, 0",
    "VECTOR_STUB 10, 1",
    "VECTOR_STUB 11, 1",
    "VECTOR_STUB 12, 1",
    "VECTOR_STUB 13, 1",
    "VECTOR_STUB 14, 1",
    "VECTOR_STUB 15, 0",
    "VECTOR_STUB 16, 0",
    "VECTOR_STUB 17, 1",
    "VECTOR_STUB 18, 0",
    "VECTOR_STUB 19, 0",
    "VECTOR_STUB 20, 0",
    "VECTOR_STUB 21, 1",
    "VECTOR_STUB 22, 0",
    "VECTOR_STUB 23, 0",
    "VECTOR_STUB 24, 0",
    "VECTOR_STUB 25, 0",
    "VECTOR_STUB 26, 0",
    "VECTOR_STUB 27, 0",
    "VECTOR_STUB 28, 0",
    "VECTOR_STUB 29, 1",
    "VECTOR_STUB 30, 1",
    "VECTOR_STUB 31, 0",
    ".balign {stride}, 0xcc",
    ".global bpfvisor_exception_stubs_end",
    "bpfvisor_exception_stubs_end:",
    "",
    // CPL 0. Kernel stack, from the top: ss, rsp, rflags, cs, rip (CPU),
    // error code, vector (stub).
    "bpfvisor_kernel_entry:",
    "    test qword ptr [rsp + 24], 3",
    "    jz 2f",
    "    mov gs:[{scratch}], rax",
    "    mov rax, [rsp]",
    "    mov gs:[{vector}], rax",
    "    mov rax, [rsp + 8]",
    "    mov gs:[{error_code}], rax",
    "    mov rax, [rsp + 16]",
    "    mov gs:[{rip}], rax",
    "    mov rax, [rsp + 32]",
    "    mov gs:[{rflags}], rax",
    "    mov rax, [rsp + 40]",
    "    mov gs:[{rsp}], rax",
    "    mov rax, cr2",
    "    mov gs:[{cr2}], rax",
    // Return to CPL 3, into the trap entry on the trap stack.
    "    lea rax, [rip + bpfvisor_user_trap_entry]",
    "    mov [rsp + 16], rax",
    "    mov qword ptr [rsp + 32], {user_rflags}",
    "    mov rax, gs:[{trap_stack_top}]",
    "    mov [rsp + 40], rax",
    "    mov rax, gs:[{scratch}]",
    "    add rsp, 16",
    "    iretq",
    // A fault at CPL 0 means this very stub is broken; there is nothing to
    // return to. Tell the host and stay put until it resets the vCPU.
    "2:",
    "    mov dx, {kernel_fault_port}",
    "    out dx, al",
    "    jmp 2b",
    "",
    // CPL 3, trap stack. Save the registers so that slot i holds x86
    // register i (rsp's slot is a placeholder; the real one is in the trap
    // slots). 16 pushes keep the 16-byte alignment of the stack top.
    ".global bpfvisor_user_trap_entry",
    "bpfvisor_user_trap_entry:",
    "    push r15",
    "    push r14",
    "    push r13",
    "    push r12",
    "    push r11",
    "    push r10",
    "    push r9",
    "    push r8",
    "    push rdi",
    "    push rsi",
    "    push rbp",
    "    push rsp",
    "    push rbx",
    "    push rdx",
    "    push rcx",
    "    push rax",
    "    mov rdi, rsp",
    "    call {handler}",
    "    pop rax",
    "    pop rcx",
    "    pop rdx",
    "    pop rbx",
    "    add rsp, 8",
    "    pop rbp",
    "    pop rsi",
    "    pop rdi",
    "    pop r8",
    "    pop r9",
    "    pop r10",
    "    pop r11",
    "    pop r12",
    "    pop r13",
    "    pop r14",
    "    pop r15",
    // Flags last but one: nothing after popfq changes them.
    "    push qword ptr gs:[{rflags}]",
    "    popfq",
    "    mov rsp, gs:[{rsp}]",
    "    jmp qword ptr gs:[{rip}]",
    stack_top = const STACK_TOP_OFFSET,
    trap_stack_top = const TRAP_STACK_TOP_OFFSET,
    scratch = const TRAP_SCRATCH_OFFSET,
    vector = const TRAP_VECTOR_OFFSET,
    error_code = const TRAP_ERROR_CODE_OFFSET,
    rip = const TRAP_RIP_OFFSET,
    rflags = const TRAP_RFLAGS_OFFSET,
    rsp = const TRAP_RSP_OFFSET,
    cr2 = const TRAP_CR2_OFFSET,
    user_rflags = const USER_RFLAGS,
    aborted_port = const ABORTED_PORT,
    kernel_fault_port = const KERNEL_FAULT_PORT,
    stride = const EXCEPTION_STUB_STRIDE,
    dispatch_loop = sym crate::dispatch::dispatch_loop,
    handler = sym crate::trap::trap_handler,
);
