//! The mailbox ABI: how the host asks a vCPU to run something and how the
//! guest answers.
//!
//! Each vCPU has one mailbox page. The host writes a [`Request`] while the
//! vCPU is stopped, then enters `KVM_RUN`; the guest runtime performs it and
//! writes a [`Response`] before leaving through [`crate::ports`]. The host
//! treats every response field as untrusted data: it reports the numbers, it
//! never uses them as lengths or addresses into its own memory.

use crate::pod::Pod;

/// What the host asks for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Incremented by the host for every request; echoed in the response.
    pub seq: u64,
    /// One of the `REQUEST_*` constants.
    pub kind: u64,
    /// Guest address of the function to call: `extern "C" fn(ctx, ctx_len) -> u64`.
    pub entry: u64,
    /// First argument (a BPF program's `r1`).
    pub ctx: u64,
    /// Second argument (a BPF program's `r2`).
    pub ctx_len: u64,
    /// How many times to call `entry`; the response carries the last result.
    pub repeat: u64,
}

/// Call `entry(ctx, ctx_len)` `repeat` times.
pub const REQUEST_CALL: u64 = 1;
/// Answer at once with the vCPU's id as the return value, running no code
/// of the host's: a liveness check and the floor of the invocation cost.
pub const REQUEST_PING: u64 = 2;

/// What the guest answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The `seq` of the request this answers.
    pub seq: u64,
    /// One of the `STATUS_*` constants.
    pub status: u64,
    /// The last call's return value.
    pub retval: u64,
    /// TSC cycles spent in all `repeat` calls.
    pub cycles: u64,
    /// Calls completed.
    pub runs: u64,
    /// Filled when `status` is [`STATUS_TRAPPED`].
    pub trap: TrapRecord,
}

/// Every call returned.
pub const STATUS_RETURNED: u64 = 1;
/// A CPU exception stopped the call.
pub const STATUS_TRAPPED: u64 = 2;
/// The request kind was not understood.
pub const STATUS_BAD_REQUEST: u64 = 3;

/// A CPU exception, as the guest's handler saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapRecord {
    /// Exception vector (0..32).
    pub vector: u64,
    /// Error code the CPU pushed, or 0 for vectors without one.
    pub error_code: u64,
    /// Guest instruction pointer of the faulting instruction.
    pub rip: u64,
    /// CR2 at the time of the exception (the faulting address for a page fault).
    pub cr2: u64,
    /// Guest stack pointer when the exception hit.
    pub rsp: u64,
}

/// Offset of the response inside the mailbox page: its own cache lines, so a
/// polling host and the guest do not share a line.
pub const RESPONSE_OFFSET: u64 = 256;

// SAFETY: repr(C), all fields u64, no padding.
unsafe impl Pod for Request {}
// SAFETY: repr(C), all fields u64 or Pod of u64, no padding.
unsafe impl Pod for Response {}
// SAFETY: repr(C), all fields u64, no padding.
unsafe impl Pod for TrapRecord {}

const _: () = assert!(core::mem::size_of::<Request>() <= RESPONSE_OFFSET as usize);
const _: () = assert!(
    RESPONSE_OFFSET as usize + core::mem::size_of::<Response>()
        <= crate::layout::PAGE_SIZE as usize
);
