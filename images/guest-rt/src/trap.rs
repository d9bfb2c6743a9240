//! CPU exceptions at CPL 3: fix up arena accesses, report everything else.

use crate::percpu::{gs_read, publish_response, request_ptr};
use shm::extable::{ExTableEntry, Fixup, decide};
use shm::layout::BOOT_INFO_START;
use shm::mailbox::{Response, STATUS_TRAPPED, TrapRecord};
use shm::percpu::{
    BootInfo, STACK_TOP_OFFSET, TRAP_CR2_OFFSET, TRAP_ERROR_CODE_OFFSET, TRAP_RIP_OFFSET,
    TRAP_RSP_OFFSET, TRAP_VECTOR_OFFSET,
};
use shm::ports::TRAP_PORT;

/// General-purpose registers at the fault, saved by
/// `bpfvisor_user_trap_entry`, indexed by x86 register number
/// (0 = rax … 15 = r15); slot 4 (rsp) is a placeholder.
#[repr(C)]
pub struct TrapFrame {
    regs: [u64; 16],
}

const PAGE_FAULT_VECTOR: u64 = 14;

/// Called on the trap stack with the registers at the fault; the rest of the
/// fault is in the per-CPU trap slots. Returns only when the fault was fixed
/// up: the entry then resumes at the trap rip, which this may have moved.
pub extern "C" fn trap_handler(frame: &mut TrapFrame) {
    if fixup_probe_read() {
        return;
    }
    let vector = gs_read(TRAP_VECTOR_OFFSET);
    let rip = gs_read(TRAP_RIP_OFFSET);
    let cr2 = gs_read(TRAP_CR2_OFFSET);
    if vector == PAGE_FAULT_VECTOR
        && let Fixup::Resume { rip, zero_reg } = decide_fixup(rip, cr2)
    {
        if let Some(reg) = zero_reg {
            frame.regs[usize::from(reg & 15)] = 0;
        }
        gs_write(TRAP_RIP_OFFSET, rip);
        return;
    }
    report_trap(TrapRecord {
        vector,
        error_code: gs_read(TRAP_ERROR_CODE_OFFSET),
        rip,
        cr2,
        rsp: gs_read(TRAP_RSP_OFFSET),
    })
}

/// Consults the exception table the host described in the boot-info page.
fn decide_fixup(rip: u64, fault_addr: u64) -> Fixup {
    // SAFETY: the boot-info page is mapped read-only at a fixed address.
    let info = unsafe { (BOOT_INFO_START as *const BootInfo).read_volatile() };
    if info.fixup_start == info.fixup_end || info.extable_len == 0 {
        return Fixup::Trap;
    }
    // SAFETY: the host placed `extable_len` sorted entries at `extable`, in a
    // read-only region it sized for them; the guest cannot change either.
    let entries = unsafe {
        core::slice::from_raw_parts(
            info.extable as *const ExTableEntry,
            info.extable_len as usize,
        )
    };
    decide(
        entries,
        info.code_start,
        rip,
        fault_addr,
        (info.fixup_start, info.fixup_end),
    )
}

/// Writes the trap into the mailbox, leaves to the host, and then serves the
/// next request from a fresh stack. In polling mode too: a trap ends the
/// polling (the state word is left as it is, never `POLL_WAITING`), and
/// the next request comes through `KVM_RUN`.
fn report_trap(trap: TrapRecord) -> ! {
    // SAFETY: the mailbox page is mapped read-write for this vCPU.
    let seq = unsafe { core::ptr::addr_of!((*request_ptr()).seq).read_volatile() };
    publish_response(&Response {
        seq,
        status: STATUS_TRAPPED,
        trap,
        ..Response::default()
    });
    // SAFETY: abandons the trap stack for this vCPU's runtime stack and
    // re-enters the dispatch loop, which never returns; nothing on either
    // stack is used again.
    unsafe {
        core::arch::asm!(
            "mov rsp, gs:[{stack_top}]",
            "out dx, al",
            "jmp bpfvisor_dispatch_entry",
            stack_top = const STACK_TOP_OFFSET,
            in("dx") TRAP_PORT,
            in("al") 0u8,
            options(noreturn),
        )
    }
}

fn gs_write(offset: usize, value: u64) {
    // SAFETY: GS points at this vCPU's per-CPU block, mapped read-write;
    // callers pass offsets of `shm::percpu::PerCpu` fields.
    unsafe {
        core::arch::asm!("mov gs:[{}], {}", in(reg) offset, in(reg) value,
            options(nostack, preserves_flags));
    }
}

// Fault-safe reads (Note [Fault-safe reads] in crate::helpers::nofault).

const GENERAL_PROTECTION_VECTOR: u64 = 13;

/// If the fault is the probe's load (a page fault, or a general-protection
/// fault for a non-canonical address), points the resume rip at its fixup
/// and returns true: the probe then returns -1 to the helper that asked.
fn fixup_probe_read() -> bool {
    let vector = gs_read(TRAP_VECTOR_OFFSET);
    if vector != PAGE_FAULT_VECTOR && vector != GENERAL_PROTECTION_VECTOR {
        return false;
    }
    match crate::helpers::nofault::fixup_for(gs_read(TRAP_RIP_OFFSET)) {
        Some(resume) => {
            gs_write(TRAP_RIP_OFFSET, resume);
            true
        }
        None => false,
    }
}
