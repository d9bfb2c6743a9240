//! Access to this vCPU's per-CPU block through GS.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};
use shm::layout::MAX_CPUS;
use shm::mailbox::{RESPONSE_OFFSET, RESPONSE_SEQ_OFFSET, Request, Response};
use shm::percpu::{CPU_ID_OFFSET, MAILBOX_OFFSET};

/// A static with one `T` per vCPU, each touched only by its own vCPU: the
/// runtime's caches (kept map headers, reserved ring samples). Give `T`
/// `#[repr(align(64))]` so that vCPUs do not share its cache lines.
pub struct PerVcpu<T>(UnsafeCell<[T; MAX_CPUS]>);

// SAFETY: vCPU n only ever touches element n (`with`), and the host gives
// every vCPU a different id; no element is shared.
unsafe impl<T> Sync for PerVcpu<T> {}

impl<T> PerVcpu<T> {
    /// One `T` per vCPU, from `each`.
    pub const fn new(each: [T; MAX_CPUS]) -> PerVcpu<T> {
        PerVcpu(UnsafeCell::new(each))
    }

    /// Runs `f` on this vCPU's `T`, if its id has one. `f` must not call
    /// anything that comes back to this `PerVcpu`.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> Option<R>) -> Option<R> {
        let cpu = gs_read(CPU_ID_OFFSET) as usize;
        if cpu >= MAX_CPUS {
            return None;
        }
        // SAFETY: in bounds (checked); element `cpu` is this vCPU's alone
        // (the Sync impl), and `f` does not come back here, so no other
        // reference to it lives.
        f(unsafe { &mut (*self.0.get())[cpu] })
    }
}

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

/// A few `T`s kept by key (`key` of each), the oldest replaced first: a
/// vCPU's small cache in a [`PerVcpu`]. Aligned so that vCPUs do not share
/// its cache lines.
#[repr(align(64))]
pub struct Kept<T: Copy, const WAYS: usize> {
    ways: [Option<(u64, T)>; WAYS],
    /// The way the next new key replaces (round robin).
    next: usize,
}

impl<T: Copy, const WAYS: usize> Kept<T, WAYS> {
    /// Nothing kept.
    pub const EMPTY: Kept<T, WAYS> = Kept {
        ways: [None; WAYS],
        next: 0,
    };

    /// The `T` kept under `key`.
    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<&T> {
        self.ways
            .iter()
            .flatten()
            .find(|(k, _)| *k == key)
            .map(|(_, t)| t)
    }

    /// Keeps `value` under `key`: in the way that held `key`, or in place
    /// of the oldest.
    #[inline(always)]
    pub fn put(&mut self, key: u64, value: T) {
        let way = match self
            .ways
            .iter()
            .position(|w| w.is_some_and(|(k, _)| k == key))
        {
            Some(way) => way,
            None => {
                let way = self.next % WAYS;
                self.next = (way + 1) % WAYS;
                way
            }
        };
        self.ways[way] = Some((key, value));
    }

    /// The `T` kept under `key`, forgotten.
    #[inline(always)]
    pub fn take(&mut self, key: u64) -> Option<T> {
        let way = self
            .ways
            .iter()
            .position(|w| w.is_some_and(|(k, _)| k == key))?;
        self.ways[way].take().map(|(_, t)| t)
    }
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
