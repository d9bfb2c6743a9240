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
);

unsafe extern "C" {
    fn bpfvisor_probe_read_byte(addr: u64) -> i32;
}

/// The byte at `addr`, or `None` if reading it faults.
pub fn read_byte(addr: u64) -> Option<u8> {
    // SAFETY: the routine loads one byte and writes nothing; a fault on
    // that load is turned into a -1 return by the trap handler (Note
    // [Fault-safe reads]).
    let value = unsafe { bpfvisor_probe_read_byte(addr) };
    u8::try_from(value).ok()
}

/// Where to resume after a fault at `rip`: the probe's fixup if `rip` is
/// its load, otherwise `None`.
pub fn fixup_for(rip: u64) -> Option<u64> {
    let (load, fixup): (u64, u64);
    // SAFETY: `lea` only computes the two labels' addresses.
    unsafe {
        core::arch::asm!(
            "lea {load}, [rip + bpfvisor_probe_read_byte_load]",
            "lea {fixup}, [rip + bpfvisor_probe_read_byte_fixup]",
            load = out(reg) load,
            fixup = out(reg) fixup,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    (rip == load).then_some(fixup)
}

/// Guest memory read through the probe, for `shm::trace::printk`.
#[derive(Debug)]
pub struct NoFault;

impl ProbeRead for NoFault {
    fn probe_read_u8(&mut self, addr: u64) -> Option<u8> {
        read_byte(addr)
    }
}
