//! Access to this vCPU's per-CPU block through GS.

use core::sync::atomic::{AtomicU64, Ordering};
use shm::mailbox::{RESPONSE_OFFSET, RESPONSE_SEQ_OFFSET, Request, Response};
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

/// The u64 at `offset` in this vCPU's mailbox page, shared with the host.
pub fn mailbox_word(offset: u64) -> &'static AtomicU64 {
    let addr = gs_read(MAILBOX_OFFSET) + offset;
    // SAFETY: the mailbox page is mapped read-write for this vCPU for as
    // long as the vCPU runs; callers pass 8-aligned offsets of words that
    // the host, too, accesses only atomically.
    unsafe { AtomicU64::from_ptr(addr as *mut u64) }
}

/// Writes `response` into the mailbox, its `seq` last: a host spinning on
/// the `seq` reads a complete answer (Note [Polling invocation] in
/// `shm::mailbox`). Sequentially consistent, so that a following read of
/// the waiter word cannot pass it.
pub fn publish_response(response: &Response) {
    let ptr = response_ptr();
    // SAFETY: the response half of the mailbox page is mapped read-write
    // for this vCPU. The seq is written separately below.
    unsafe {
        ptr.write_volatile(Response {
            seq: core::ptr::addr_of!((*ptr).seq).read_volatile(),
            ..*response
        });
    }
    mailbox_word(RESPONSE_SEQ_OFFSET).store(response.seq, Ordering::SeqCst);
}
