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
//! Helpers that move or compare many bytes (`bpf_probe_read_kernel`,
//! `bpf_snprintf`'s output, map headers and keys) use four more routines built the same way, whose every access
//! to program memory is one instruction the trap handler knows (the
//! `bpfvisor_nofault_*` labels below), all resuming at one fixup that
//! returns -1: the routines push nothing, so at any of those instructions
//! the stack holds just the return address.
//!
//! * `bpfvisor_copy_nofault(dst, src, len)`: word moves for small copies,
//!   `rep movsb` for large ones (Note [Small fault-safe copies]); a fault
//!   leaves some of the bytes copied;
//! * `bpfvisor_equal64_nofault(addr, words)`: whether 64 bytes of program
//!   memory (a map header) are the given words;
//! * `bpfvisor_fill_nofault(dst, byte, len)`: `rep stosb`;
//! * `bpfvisor_strncpy_nofault(dst, src, count)`: copies bytes up to and
//!   including a NUL, at most `count` (> 0), NUL-terminating a string cut
//!   short; returns how many bytes it stored, as the kernel's
//!   `strncpy_from_kernel_nofault`.
//!
//! The routines' accesses are listed in `bpfvisor_nofault_sites`, which
//! [`fixup_for`] searches.
//!
//! Note [Small fault-safe copies]
//! Map helpers copy a 64-byte map header and a key (usually 4 or 8 bytes)
//! out of program memory on every call. `rep movsb` takes tens of cycles
//! to start, more than the rest of an array lookup, so copies of up to
//! `SMALL_COPY_MAX` bytes move words instead: 8-byte words from the
//! start, then the last 8 bytes again (overlapping the previous word when
//! the length is not a multiple of 8); 4 to 7 bytes as two overlapping
//! 4-byte words; fewer, byte by byte. Every access stays inside
//! `src..src+len` and `dst..dst+len`, and each is one instruction listed
//! for the fixup, so a copy faults exactly where a byte copy of the same
//! range could, and returns -1 as `rep movsb` does.

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
    // Note [Small fault-safe copies].
    ".global bpfvisor_copy_nofault",
    "bpfvisor_copy_nofault:",
    "    cmp rdx, {small_copy_max}",
    "    ja 5f",
    "    cmp rdx, 8",
    "    jb 3f",
    // 8 ..= SMALL_COPY_MAX bytes: words at 0, 8, ... below len - 8, then
    // the (overlapping) last word at len - 8.
    "    lea r8, [rdx - 8]",
    "    xor ecx, ecx",
    "    jmp 2f",
    "8:",
    "bpfvisor_nofault_load8:",
    "    mov rax, [rsi + rcx]",
    "bpfvisor_nofault_store8:",
    "    mov [rdi + rcx], rax",
    "    add rcx, 8",
    "2:",
    "    cmp rcx, r8",
    "    jb 8b",
    "bpfvisor_nofault_load8_last:",
    "    mov rax, [rsi + r8]",
    "bpfvisor_nofault_store8_last:",
    "    mov [rdi + r8], rax",
    "    xor eax, eax",
    "    ret",
    // 4 ..= 7 bytes: the (overlapping) words at 0 and len - 4.
    "3:",
    "    cmp rdx, 4",
    "    jb 4f",
    "bpfvisor_nofault_load4:",
    "    mov eax, [rsi]",
    "bpfvisor_nofault_load4_last:",
    "    mov ecx, [rsi + rdx - 4]",
    "bpfvisor_nofault_store4:",
    "    mov [rdi], eax",
    "bpfvisor_nofault_store4_last:",
    "    mov [rdi + rdx - 4], ecx",
    "    xor eax, eax",
    "    ret",
    // 0 ..= 3 bytes, one at a time.
    "4:",
    "    xor ecx, ecx",
    "    test rdx, rdx",
    "    jz 7f",
    "6:",
    "bpfvisor_nofault_load1:",
    "    movzx eax, byte ptr [rsi + rcx]",
    "bpfvisor_nofault_store1:",
    "    mov [rdi + rcx], al",
    "    inc rcx",
    "    cmp rcx, rdx",
    "    jb 6b",
    "7:",
    "    xor eax, eax",
    "    ret",
    // Above SMALL_COPY_MAX: the string instruction.
    "5:",
    "    mov rcx, rdx",
    "bpfvisor_nofault_movsb:",
    "    rep movsb",
    "    xor eax, eax",
    "    ret",
    // rdi = program memory, rsi = runtime memory. Returns 0 if the 64
    // bytes at rdi equal those at rsi, 1 if not, -1 on a fault. Unrolled:
    // a map helper compares a header on every call.
    ".global bpfvisor_equal64_nofault",
    "bpfvisor_equal64_nofault:",
    "bpfvisor_nofault_eq0:",
    "    mov rax, [rdi]",
    "bpfvisor_nofault_eq1:",
    "    mov rcx, [rdi + 8]",
    "    xor rax, [rsi]",
    "    xor rcx, [rsi + 8]",
    "    or rax, rcx",
    "bpfvisor_nofault_eq2:",
    "    mov rcx, [rdi + 16]",
    "bpfvisor_nofault_eq3:",
    "    mov rdx, [rdi + 24]",
    "    xor rcx, [rsi + 16]",
    "    xor rdx, [rsi + 24]",
    "    or rax, rcx",
    "    or rax, rdx",
    "bpfvisor_nofault_eq4:",
    "    mov rcx, [rdi + 32]",
    "bpfvisor_nofault_eq5:",
    "    mov rdx, [rdi + 40]",
    "    xor rcx, [rsi + 32]",
    "    xor rdx, [rsi + 40]",
    "    or rax, rcx",
    "    or rax, rdx",
    "bpfvisor_nofault_eq6:",
    "    mov rcx, [rdi + 48]",
    "bpfvisor_nofault_eq7:",
    "    mov rdx, [rdi + 56]",
    "    xor rcx, [rsi + 48]",
    "    xor rdx, [rsi + 56]",
    "    or rax, rcx",
    "    or rax, rdx",
    "    neg rax",
    "    sbb eax, eax",
    "    neg eax",
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
    // Every instruction of the routines above that touches program
    // memory, all resumed at bpfvisor_nofault_fixup.
    ".section .rodata.bpfvisor_nofault, \"a\"",
    ".balign 8",
    ".global bpfvisor_nofault_sites",
    "bpfvisor_nofault_sites:",
    "    .quad bpfvisor_nofault_load8",
    "    .quad bpfvisor_nofault_store8",
    "    .quad bpfvisor_nofault_load8_last",
    "    .quad bpfvisor_nofault_store8_last",
    "    .quad bpfvisor_nofault_load4",
    "    .quad bpfvisor_nofault_load4_last",
    "    .quad bpfvisor_nofault_store4",
    "    .quad bpfvisor_nofault_store4_last",
    "    .quad bpfvisor_nofault_load1",
    "    .quad bpfvisor_nofault_store1",
    "    .quad bpfvisor_nofault_eq0",
    "    .quad bpfvisor_nofault_eq1",
    "    .quad bpfvisor_nofault_eq2",
    "    .quad bpfvisor_nofault_eq3",
    "    .quad bpfvisor_nofault_eq4",
    "    .quad bpfvisor_nofault_eq5",
    "    .quad bpfvisor_nofault_eq6",
    "    .quad bpfvisor_nofault_eq7",
    "    .quad bpfvisor_nofault_movsb",
    "    .quad bpfvisor_nofault_stosb",
    "    .quad bpfvisor_nofault_strncpy_load",
    "    .quad bpfvisor_nofault_strncpy_store",
    "    .quad bpfvisor_nofault_strncpy_cut",
    small_copy_max = const SMALL_COPY_MAX,
);

/// Number of entries in `bpfvisor_nofault_sites`.
const NOFAULT_SITES: usize = 23;

/// Largest copy made with plain moves rather than `rep movsb` (Note
/// [Small fault-safe copies]).
const SMALL_COPY_MAX: u64 = 256;

unsafe extern "C" {
    static bpfvisor_nofault_sites: [u64; NOFAULT_SITES];
    fn bpfvisor_probe_read_byte(addr: u64) -> i32;
    fn bpfvisor_copy_nofault(dst: u64, src: u64, len: u64) -> i64;
    fn bpfvisor_fill_nofault(dst: u64, byte: u64, len: u64) -> i64;
    fn bpfvisor_equal64_nofault(addr: u64, words: *const [u64; 8]) -> i64;
    fn bpfvisor_strncpy_nofault(dst: u64, src: u64, count: u64) -> i64;
}

/// A fault-safe access that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// Copies `len` bytes from `src` to `dst` in program memory; on a fault,
/// some of the bytes may have been copied.
pub fn copy(dst: u64, src: u64, len: u64) -> Result<(), Fault> {
    // SAFETY: the routine only touches `dst..dst+len` and `src..src+len`
    // through instructions whose faults the trap handler turns into a -1
    // return (Note [Fault-safe reads]); it writes nothing else. Program
    // memory is not Rust memory: no Rust reference covers it.
    let ret = unsafe { bpfvisor_copy_nofault(dst, src, len) };
    if ret == 0 { Ok(()) } else { Err(Fault) }
}

/// Whether the 64 bytes at `addr` in program memory are `words`.
pub fn equal64(addr: u64, words: &[u64; 8]) -> Result<bool, Fault> {
    // SAFETY: the routine reads `addr..addr+64` only through instructions
    // whose faults the trap handler turns into a -1 return (Note
    // [Fault-safe reads]), and `words`, which is Rust memory; it writes
    // nothing.
    let ret = unsafe { bpfvisor_equal64_nofault(addr, words) };
    match ret {
        0 => Ok(true),
        1 => Ok(false),
        _ => Err(Fault),
    }
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
    let (load, fixup, routines_fixup): (u64, u64, u64);
    // SAFETY: `lea` only computes the labels' addresses.
    unsafe {
        core::arch::asm!(
            "lea {load}, [rip + bpfvisor_probe_read_byte_load]",
            "lea {fixup}, [rip + bpfvisor_probe_read_byte_fixup]",
            "lea {routines_fixup}, [rip + bpfvisor_nofault_fixup]",
            load = out(reg) load,
            fixup = out(reg) fixup,
            routines_fixup = out(reg) routines_fixup,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    // SAFETY: the table is NOFAULT_SITES addresses in the runtime's
    // read-only data, written by the assembler and never changed.
    let sites = unsafe { &bpfvisor_nofault_sites };
    if rip == load {
        Some(fixup)
    } else if sites.contains(&rip) {
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
