//! The per-CPU block each vCPU's GS base points at, and the boot-info page.
//!
//! The host fills both when it builds the sandbox; the guest runtime and JIT
//! code read them through `gs:[offset]` (the offsets below are what the JIT
//! emits, e.g. `add rdi, gs:[0x8]` for `this_cpu_off`).

use crate::pod::Pod;
use core::mem::offset_of;

/// One vCPU's identity and the addresses of its private areas.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerCpu {
    /// Guest address of this block (so `gs:[0]` gives a plain pointer).
    pub self_addr: u64,
    /// Added to the address of a `.percpu` variable to reach this CPU's copy.
    pub this_cpu_off: u64,
    /// This vCPU's index, 0-based.
    pub cpu_id: u64,
    /// Number of vCPUs in the sandbox.
    pub nr_cpus: u64,
    /// Guest address of this vCPU's mailbox.
    pub mailbox: u64,
    /// Initial stack pointer of the runtime stack.
    pub stack_top: u64,
    /// Guest address and size of the trace buffer.
    pub trace_buf: u64,
    /// Size of the trace buffer in bytes.
    pub trace_size: u64,
    /// Guest address of the context buffer.
    pub ctx_buf: u64,
    /// Size of the context buffer in bytes.
    pub ctx_size: u64,
}

/// `gs:` offset of [`PerCpu::self_addr`].
pub const SELF_ADDR_OFFSET: usize = offset_of!(PerCpu, self_addr);
/// `gs:` offset of [`PerCpu::this_cpu_off`].
pub const THIS_CPU_OFF_OFFSET: usize = offset_of!(PerCpu, this_cpu_off);
/// `gs:` offset of [`PerCpu::cpu_id`].
pub const CPU_ID_OFFSET: usize = offset_of!(PerCpu, cpu_id);
/// `gs:` offset of [`PerCpu::mailbox`].
pub const MAILBOX_OFFSET: usize = offset_of!(PerCpu, mailbox);
/// `gs:` offset of [`PerCpu::stack_top`].
pub const STACK_TOP_OFFSET: usize = offset_of!(PerCpu, stack_top);

const _: () = assert!(THIS_CPU_OFF_OFFSET == 8);

/// Sandbox-wide facts the guest runtime needs, on a read-only page.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`], so a runtime can tell it is reading the right page.
    pub magic: u64,
    /// Number of vCPUs.
    pub nr_cpus: u64,
    /// Start of the JIT code region; exception-table offsets are relative to it.
    pub code_start: u64,
    /// Size of the JIT code region.
    pub code_size: u64,
    /// Guest address of the first [`crate::extable::ExTableEntry`].
    pub extable: u64,
    /// Number of exception-table entries in use.
    pub extable_len: u64,
    /// Start of the window where faulting accesses are fixed up (the arena);
    /// empty when `fixup_start == fixup_end`.
    pub fixup_start: u64,
    /// End of that window.
    pub fixup_end: u64,
}

/// Identifies a [`BootInfo`] page ("bpfvisor" in ASCII, little-endian).
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"bpfvisor");

// SAFETY: repr(C), all fields u64, no padding.
unsafe impl Pod for PerCpu {}
// SAFETY: repr(C), all fields u64, no padding.
unsafe impl Pod for BootInfo {}
