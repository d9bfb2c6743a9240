//! The mailbox ABI: how the host asks a vCPU to run something and how the
//! guest answers.
//!
//! Each vCPU has one mailbox page. The host writes a [`Request`] while the
//! vCPU is stopped, then enters `KVM_RUN`; the guest runtime performs it and
//! writes a [`Response`] before leaving through [`crate::ports`]. The host
//! treats every response field as untrusted data: it reports the numbers, it
//! never uses them as lengths or addresses into its own memory.
//!
//! ```text
//!  mailbox page
//!  +0x000  Request (seq, kind, entry, ctx, ctx_len, repeat,    host writes
//!          poll_cycles)
//!  +0x038  poll state word (POLL_*)                  both, compare-exchange
//!  +0x040  waiter word (WAITER_*)                           host writes
//!  +0x100  Response (seq, status, retval, cycles, runs,     guest writes
//!          trap record)
//! ```
//!
//! Note [Polling invocation]
//! A request with `poll_cycles > 0` asks the runtime not to leave after
//! answering. It writes the response's body, sets the state word to
//! [`POLL_WAITING`], and publishes the response's `seq` last (release).
//! Then, for up to `poll_cycles` TSC cycles, it spins (`pause`) on the
//! request's `seq`, serving each new request in place, each answer
//! restarting the budget with the new request's `poll_cycles`. When the
//! budget runs out it moves the state word from `POLL_WAITING` to
//! [`POLL_IDLE`] with a compare-exchange and, if that succeeded, leaves
//! through [`crate::ports::IDLE_PORT`]; the next request comes through
//! `KVM_RUN` again.
//!
//! A host that knows the vCPU's thread is inside `KVM_RUN` (it keeps that
//! knowledge itself; the state word is guest-writable) claims the vCPU by
//! moving the state word from `POLL_WAITING` to [`POLL_CLAIMED`], then
//! writes the request's body and its `seq` last (release), and spins on
//! the response's `seq` (acquire). The two compare-exchanges decide every
//! race with the idle transition: either the host's claim wins, and the
//! runtime, whose own exchange then fails, waits for the `seq` (which comes
//! right after the claim) with no budget; or the runtime's wins, and the
//! host's claim fails and the host sends the request through `KVM_RUN`,
//! which the vCPU thread enters once it is back from the idle exit. The
//! host can also end the polling at once (before a reset) by moving the
//! state word from `POLL_WAITING` to `POLL_IDLE` itself: the runtime reads
//! the word on every iteration and leaves when it sees `POLL_IDLE`.
//!
//! A host that stops spinning to sleep sets the waiter word to
//! [`WAITER_ASLEEP`] (sequentially consistent) and reads the response's
//! `seq` again before it sleeps; the runtime, after publishing a
//! response's `seq` (sequentially consistent), reads the waiter word and,
//! when it says asleep, rings [`crate::ports::DOORBELL_PORT`] with its CPU
//! id, which KVM turns into an eventfd signal without leaving `KVM_RUN`.
//! One of the two always sees the other's write, so no answer is slept
//! through. A trap still leaves through `TRAP_PORT` (after writing the
//! response), and ends the polling.

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
    /// After answering, wait this many TSC cycles in the guest for the next
    /// request instead of leaving (Note [Polling invocation]); 0 leaves
    /// through `RUN_DONE_PORT` at once.
    pub poll_cycles: u64,
}

/// Call `entry(ctx, ctx_len)` `repeat` times.
pub const REQUEST_CALL: u64 = 1;
/// Answer at once with the vCPU's id as the return value, running no code
/// of the host's: a liveness check and the floor of the invocation cost.
pub const REQUEST_PING: u64 = 2;

/// Offset of the request's `seq` in the mailbox page.
pub const REQUEST_SEQ_OFFSET: u64 = core::mem::offset_of!(Request, seq) as u64;

/// Offset of the poll state word (Note [Polling invocation]): in the
/// request's cache line, so that a claim and the request it announces
/// travel together.
pub const POLL_STATE_OFFSET: u64 = 56;
/// The runtime is not waiting for requests in the mailbox: send the next
/// one through `KVM_RUN`. Also the host's order to stop waiting.
pub const POLL_IDLE: u64 = 0;
/// The runtime spins on the request's `seq`; the host may claim it.
pub const POLL_WAITING: u64 = 1;
/// The host claimed the spinning runtime and is writing a request.
pub const POLL_CLAIMED: u64 = 2;

/// Offset of the waiter word: whether the host sleeps waiting for the
/// answer (Note [Polling invocation]).
pub const WAITER_OFFSET: u64 = 64;
/// The host spins on the response: no doorbell needed.
pub const WAITER_AWAKE: u64 = 0;
/// The host sleeps on the doorbell.
pub const WAITER_ASLEEP: u64 = 1;

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
/// Offset of the response's `seq` in the mailbox page.
pub const RESPONSE_SEQ_OFFSET: u64 = RESPONSE_OFFSET + core::mem::offset_of!(Response, seq) as u64;

// SAFETY: repr(C), all fields u64, no padding.
unsafe impl Pod for Request {}
// SAFETY: repr(C), all fields u64 or Pod of u64, no padding.
unsafe impl Pod for Response {}
// SAFETY: repr(C), all fields u64, no padding.
unsafe impl Pod for TrapRecord {}

const _: () = assert!(core::mem::size_of::<Request>() <= POLL_STATE_OFFSET as usize);
const _: () = assert!(POLL_STATE_OFFSET / 64 == REQUEST_SEQ_OFFSET / 64);
const _: () = assert!(WAITER_OFFSET + 8 <= RESPONSE_OFFSET);
const _: () = assert!(
    RESPONSE_OFFSET as usize + core::mem::size_of::<Response>()
        <= crate::layout::PAGE_SIZE as usize
);
