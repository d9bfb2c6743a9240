//! Access to this vCPU's per-CPU block through GS.

use shm::mailbox::{RESPONSE_OFFSET, Request, Response};
use shm::percpu::MAILBOX_OFFSET;

/// Reads the u64 at `gs:[offset]`.
#[inline(always)]
pub fn gs_read(offset: usize) -> u64 {
    let value: u64;
    // SAFETY: GS points at this vCPU's per-CPU block, mapped read-write for
    // the whole page; callers pass offsets of `shm::percpu::PerCpu` fields.
    unsafe {
        core::arch::asm!("mov {}, gs:[{}]", out(reg) value, in(reg) offset,
            options(nostack, readonly, preserves_flags));
    }
    value
}

/// This vCPU's mailbox request.
pub fn request_ptr() -> *const Request {
    gs_read(MAILBOX_OFFSET) as *const Request
}

/// This vCPU's mailbox response.
pub fn response_ptr() -> *mut Response {
    (gs_read(MAILBOX_OFFSET) + RESPONSE_OFFSET) as *mut Response
}
