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
    /// Top of the trap stack the CPL 3 trap handler runs on.
    pub trap_stack_top: u64,
    /// Where the CPL 0 exception stub hands a fault to the CPL 3 handler,
    /// and where the handler says where to resume.
    pub trap: TrapSlots,
    /// Stack pointer of the runtime's program-call frame while a program
    /// runs, so that a helper can end the whole program at once (Note
    /// \[Unwinding\] in the guest runtime's `program.rs`).
    pub unwind_rsp: u64,
    /// Tail calls taken since the program was entered; the runtime zeroes it
    /// before each run, the JIT's tail-call sequence counts it against
    /// [`MAX_TAIL_CALLS`].
    pub tail_call_cnt: u64,
    /// State of this vCPU's pseudo-random generator
    /// (`bpf_get_prandom_u32`), seeded by the host; never 0.
    pub prng_state: u64,
}

/// Most tail calls one run may take (the kernel's `MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALLS: u64 = 33;

/// The fault being handled on this vCPU (Note [Guest privilege levels]).
///
/// The CPL 0 stub fills every field from the CPU's exception frame, then
/// returns to the runtime's CPL 3 trap entry with every general-purpose
/// register as it was at the fault. If the handler resumes the program, it
/// continues at `rip` with `rsp` and `rflags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapSlots {
    /// Exception vector.
    pub vector: u64,
    /// Error code (0 for vectors without one).
    pub error_code: u64,
    /// Instruction pointer at the fault; the resume address afterwards.
    pub rip: u64,
    /// RFLAGS at the fault.
    pub rflags: u64,
    /// Stack pointer at the fault.
    pub rsp: u64,
    /// CR2 at the fault.
    pub cr2: u64,
    /// Scratch slot for the stub's one working register.
    pub scratch: u64,
}

/// `gs:` offset of [`PerCpu::self_addr`].
pub const SELF_ADDR_OFFSET: usize = offset_of!(PerCpu, self_addr);
/// `gs:` offset of [`PerCpu::this_cpu_off`].
pub const THIS_CPU_OFF_OFFSET: usize = offset_of!(PerCpu, this_cpu_off);
/// `gs:` offset of [`PerCpu::cpu_id`].
pub const CPU_ID_OFFSET: usize = offset_of!(PerCpu, cpu_id);
/// `gs:` offset of [`PerCpu::nr_cpus`].
pub const NR_CPUS_OFFSET: usize = offset_of!(PerCpu, nr_cpus);
/// `gs:` offset of [`PerCpu::mailbox`].
pub const MAILBOX_OFFSET: usize = offset_of!(PerCpu, mailbox);
/// `gs:` offset of [`PerCpu::stack_top`].
pub const STACK_TOP_OFFSET: usize = offset_of!(PerCpu, stack_top);
/// `gs:` offset of [`PerCpu::trap_stack_top`].
pub const TRAP_STACK_TOP_OFFSET: usize = offset_of!(PerCpu, trap_stack_top);
/// `gs:` offset of [`TrapSlots::vector`].
pub const TRAP_VECTOR_OFFSET: usize = offset_of!(PerCpu, trap) + offset_of!(TrapSlots, vector);
/// `gs:` offset of [`TrapSlots::error_code`].
pub const TRAP_ERROR_CODE_OFFSET: usize =
    offset_of!(PerCpu, trap) + offset_of!(TrapSlots, error_code);
/// `gs:` offset of [`TrapSlots::rip`].
pub const TRAP_RIP_OFFSET: usize = offset_of!(PerCpu, trap) + offset_of!(TrapSlots, rip);
/// `gs:` offset of [`TrapSlots::rflags`].
pub const TRAP_RFLAGS_OFFSET: usize = offset_of!(PerCpu, trap) + offset_of!(TrapSlots, rflags);
/// `gs:` offset of [`TrapSlots::rsp`].
pub const TRAP_RSP_OFFSET: usize = offset_of!(PerCpu, trap) + offset_of!(TrapSlots, rsp);
/// `gs:` offset of [`TrapSlots::cr2`].
pub const TRAP_CR2_OFFSET: usize = offset_of!(PerCpu, trap) + offset_of!(TrapSlots, cr2);
/// `gs:` offset of [`TrapSlots::scratch`].
pub const TRAP_SCRATCH_OFFSET: usize = offset_of!(PerCpu, trap) + offset_of!(TrapSlots, scratch);

/// `gs:` offset of [`PerCpu::unwind_rsp`].
pub const UNWIND_RSP_OFFSET: usize = offset_of!(PerCpu, unwind_rsp);
/// `gs:` offset of [`PerCpu::tail_call_cnt`].
pub const TAIL_CALL_CNT_OFFSET: usize = offset_of!(PerCpu, tail_call_cnt);
/// `gs:` offset of [`PerCpu::ctx_buf`].
pub const CTX_BUF_OFFSET: usize = offset_of!(PerCpu, ctx_buf);
/// `gs:` offset of [`PerCpu::ctx_size`].
pub const CTX_SIZE_OFFSET: usize = offset_of!(PerCpu, ctx_size);
/// `gs:` offset of [`PerCpu::prng_state`].
pub const PRNG_STATE_OFFSET: usize = offset_of!(PerCpu, prng_state);

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
    /// The guest's TSC at the moment the host's `CLOCK_MONOTONIC` read
    /// `clock_ns`: with `tsc_khz`, the guest computes the host's monotonic
    /// time as `clock_ns + (rdtsc - clock_tsc) * 1e6 / tsc_khz`
    /// (`bpf_ktime_get_ns` and friends), with no exit.
    pub clock_tsc: u64,
    /// Host `CLOCK_MONOTONIC` in nanoseconds at `clock_tsc`.
    pub clock_ns: u64,
    /// Guest TSC frequency in kHz; 0 if unknown (time then stands still).
    pub tsc_khz: u64,
}

/// Identifies a [`BootInfo`] page ("bpfvisor" in ASCII, little-endian).
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"bpfvisor");

// SAFETY: repr(C), all fields u64 or Pod of u64, no padding.
unsafe impl Pod for PerCpu {}
// SAFETY: repr(C), all fields u64, no padding.
unsafe impl Pod for TrapSlots {}
// SAFETY: repr(C), all fields u64, no padding.
unsafe impl Pod for BootInfo {}

/// RFLAGS the runtime runs with: IOPL 0 (the TSS grants our ports, Note
/// [Port permissions] in `crate::ports`), interrupts off, and the
/// always-one bit.
pub const USER_RFLAGS: u64 = 1 << 1;

/// `bpf_per_cpu_ptr(ptr, cpu)` for `.percpu` data: `ptr` points into some
/// vCPU's copy (what an `ld_imm64` of a `.percpu` variable gives on the
/// vCPU that ran it); the same byte of `cpu`'s copy, or `None` when `ptr`
/// is in no copy or `cpu` does not exist, as the kernel returns NULL.
/// `data0` is vCPU 0's copy, `area_size` the distance between copies.
pub fn per_cpu_ptr(ptr: u64, data0: u64, area_size: u64, nr_cpus: u64, cpu: u64) -> Option<u64> {
    if cpu >= nr_cpus || area_size == 0 {
        return None;
    }
    let rel = ptr.checked_sub(data0)?;
    let (owner, off) = (rel / area_size, rel % area_size);
    if owner >= nr_cpus || off >= crate::layout::area::PERCPU_DATA_SIZE {
        return None;
    }
    Some(data0 + cpu * area_size + off)
}

#[cfg(test)]
mod per_cpu_ptr_tests {
    use super::per_cpu_ptr;
    use crate::layout::area::PERCPU_DATA_SIZE;

    #[test]
    fn per_cpu_ptr_moves_between_copies_and_refuses_the_rest() {
        let (data0, area, cpus) = (0x10_0000, 0x4_0000, 4);
        assert_eq!(
            per_cpu_ptr(data0 + 8, data0, area, cpus, 2),
            Some(data0 + 2 * area + 8)
        );
        assert_eq!(
            per_cpu_ptr(data0 + 3 * area + 8, data0, area, cpus, 0),
            Some(data0 + 8)
        );
        assert_eq!(
            per_cpu_ptr(data0 + 8, data0, area, cpus, 4),
            None,
            "no such CPU"
        );
        assert_eq!(
            per_cpu_ptr(data0 - 1, data0, area, cpus, 0),
            None,
            "below copy 0"
        );
        let past = data0 + PERCPU_DATA_SIZE;
        assert_eq!(
            per_cpu_ptr(past, data0, area, cpus, 0),
            None,
            "between copies"
        );
        assert_eq!(
            per_cpu_ptr(data0 + 4 * area, data0, area, cpus, 0),
            None,
            "past the last"
        );
        assert_eq!(per_cpu_ptr(u64::MAX, data0, area, cpus, 1), None);
    }
}
