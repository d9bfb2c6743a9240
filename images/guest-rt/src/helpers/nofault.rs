//! Fault-safe reads of memory a program points a helper at.
//!
//! Note [Fault-safe reads]
//! Helpers read memory through pointers a program hands them
//! (`bpf_trace_printk`'s format string and its `%s` arguments), and a
//! program may pass any value. As the kernel's `copy_from_kernel_nofault`
//! does, every such read goes through a single load instruction that the
//! trap handler knows: `bpfvisor_probe_read_byte_load`. When a page fault,
//! or a general-protection fault (a non-canonical address), hits exactly
//! that instruction, `crate::trap` resumes at
//! `bpfvisor_probe_read_byte_fixup`, which returns -1 instead of a byte.
//! No other runtime instruction is ever resumed after a fault.
//!
//! The probe reads with the program's own rights (CPL 3, the same page
//! tables), so it reaches nothing the program could not read itself.
//!
//! Helpers that move many bytes (`bpf_probe_read_kernel`, `bpf_snprintf`'s
//! output) use three more routines built the same way, whose every access
//! to program memory is one instruction the trap handler knows (the
//! `bpfvisor_nofault_*` labels below), all resuming at one fixup that
//! returns -1: the routines push nothing, so at any of those instructions
//! the stack holds just the return address.
//!
//! * `bpfvisor_copy_nofault(dst, src, len)`: `rep movsb`, which the CPU
//!   restarts after a fault with its progress in rsi/rdi/rcx, so a fault
//!   leaves the bytes before it copied;
//! * `bpfvisor_fill_nofault(dst, byte, len)`: `rep stosb`;
//! * `bpfvisor_strncpy_nofault(dst, src, count)`: copies bytes up to and
//!   including a NUL, at most `count` (> 0), NUL-terminating a string cut
//!   short; returns how many bytes it stored, as the kernel's
//!   `strncpy_from_kernel_nofault`.

use shm::trace::printk::ProbeRead;

core::arch::global_asm!(
    ".section .text.bpfvisor_nofault, \"ax\"",
    // rdi = address. Returns the byte zero-extended in eax, or -1 when the
    // load faults.
    ".global bpfvisor_probe_read_byte",
    "bpfvisor_probe_read_byte:",
    ".global bpfvisor_probe_read_byte_load",
    "bpfvisor_probe_read_byte_load:",
    "    movzx eax, byte ptr [rdi]",
    "    ret",
    ".global bpfvisor_probe_read_byte_fixup",
    "bpfvisor_probe_read_byte_fixup:",
    "    mov eax, -1",
    "    ret",
    // rdi = dst, rsi = src, rdx = len. Returns 0, or -1 on a fault.
    ".global bpfvisor_copy_nofault",
    "bpfvisor_copy_nofault:",
    "    mov rcx, rdx",
    "bpfvisor_nofault_movsb:",
    "    rep movsb",
    "    xor eax, eax",
    "    ret",
    // rdi = dst, sil = byte, rdx = len. Returns 0, or -1 on a fault.
    ".global bpfvisor_fill_nofault",
    "bpfvisor_fill_nofault:",
    "    mov eax, esi",
    "    mov rcx, rdx",
    "bpfvisor_nofault_stosb:",
    "    rep stosb",
    "    xor eax, eax",
    "    ret",
    // rdi = dst, rsi = src, rdx = count (> 0). Returns the bytes stored,
    // the last one a NUL, or -1 on a fault.
    ".global bpfvisor_strncpy_nofault",
    "bpfvisor_strncpy_nofault:",
    "    xor eax, eax",
    "2:",
    "bpfvisor_nofault_strncpy_load:",
    "    movzx ecx, byte ptr [rsi + rax]",
    "bpfvisor_nofault_strncpy_store:",
    "    mov byte ptr [rdi + rax], cl",
    "    inc rax",
    "    test ecx, ecx",
    "    jz 3f",
    "    cmp rax, rdx",
    "    jb 2b",
    "bpfvisor_nofault_strncpy_cut:",
    "    mov byte ptr [rdi + rax - 1], 0",
    "3:",
    "    ret",
    "bpfvisor_nofault_fixup:",
    "    mov rax, -1",
    "    ret",
);

unsafe extern "C" {
    fn bpfvisor_probe_read_byte(addr: u64) -> i32;
    fn bpfvisor_copy_nofault(dst: u64, src: u64, len: u64) -> i64;
    fn bpfvisor_fill_nofault(dst: u64, byte: u64, len: u64) -> i64;
    fn bpfvisor_strncpy_nofault(dst: u64, src: u64, count: u64) -> i64;
}

/// A fault-safe access that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// Copies `len` bytes from `src` to `dst` in program memory; on a fault,
/// the bytes before it are copied and the rest are not.
pub fn copy(dst: u64, src: u64, len: u64) -> Result<(), Fault> {
    // SAFETY: the routine only touches `dst..dst+len` and `src..src+len`
    // through instructions whose faults the trap handler turns into a -1
    // return (Note [Fault-safe reads]); it writes nothing else. Program
    // memory is not Rust memory: no Rust reference covers it.
    let ret = unsafe { bpfvisor_copy_nofault(dst, src, len) };
    if ret == 0 { Ok(()) } else { Err(Fault) }
}

/// Sets `len` bytes at `dst` in program memory to `byte`.
pub fn fill(dst: u64, byte: u8, len: u64) -> Result<(), Fault> {
    // SAFETY: as in `copy`, for `dst..dst+len` alone.
    let ret = unsafe { bpfvisor_fill_nofault(dst, u64::from(byte), len) };
    if ret == 0 { Ok(()) } else { Err(Fault) }
}

/// Copies the string at `src` to `dst`, at most `count` bytes (> 0) with
/// its NUL, cutting it one byte short with a NUL if it is longer; returns
/// the number of bytes stored (`strncpy_from_kernel_nofault`).
pub fn strncpy(dst: u64, src: u64, count: u64) -> Result<u64, Fault> {
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: as in `copy`: at most `count` bytes of each side, each
    // access one of the fixed-up instructions.
    let ret = unsafe { bpfvisor_strncpy_nofault(dst, src, count) };
    u64::try_from(ret).map_err(|_| Fault)
}

/// The byte at `addr`, or `None` if reading it faults.
pub fn read_byte(addr: u64) -> Option<u8> {
    // SAFETY: the routine loads one byte and writes nothing; a fault on
    // that load is turned into a -1 return by the trap handler (Note
    // [Fault-safe reads]).
    let value = unsafe { bpfvisor_probe_read_byte(addr) };
    u8::try_from(value).ok()
}

/// Where to resume after a fault at `rip`: the fixup of the probe or
/// routine whose access `rip` is, otherwise `None`.
pub fn fixup_for(rip: u64) -> Option<u64> {
    let (load, fixup): (u64, u64);
    let (movsb, stosb, str_load, str_store, str_cut, routines_fixup): (
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    );
    // SAFETY: `lea` only computes the labels' addresses.
    unsafe {
        core::arch::asm!(
            "lea {load}, [rip + bpfvisor_probe_read_byte_load]",
            "lea {fixup}, [rip + bpfvisor_probe_read_byte_fixup]",
            "lea {movsb}, [rip + bpfvisor_nofault_movsb]",
            "lea {stosb}, [rip + bpfvisor_nofault_stosb]",
            "lea {str_load}, [rip + bpfvisor_nofault_strncpy_load]",
            "lea {str_store}, [rip + bpfvisor_nofault_strncpy_store]",
            "lea {str_cut}, [rip + bpfvisor_nofault_strncpy_cut]",
            "lea {routines_fixup}, [rip + bpfvisor_nofault_fixup]",
            load = out(reg) load,
            fixup = out(reg) fixup,
            movsb = out(reg) movsb,
            stosb = out(reg) stosb,
            str_load = out(reg) str_load,
            str_store = out(reg) str_store,
            str_cut = out(reg) str_cut,
            routines_fixup = out(reg) routines_fixup,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    if rip == load {
        Some(fixup)
    } else if [movsb, stosb, str_load, str_store, str_cut].contains(&rip) {
        Some(routines_fixup)
    } else {
        None
    }
}

/// Guest memory read through the probe, for `shm::trace::printk`.
#[derive(Debug)]
pub struct NoFault;

impl ProbeRead for NoFault {
    fn probe_read_u8(&mut self, addr: u64) -> Option<u8> {
        read_byte(addr)
    }
}
