//! Ring buffers (`BPF_MAP_TYPE_RINGBUF` and `BPF_MAP_TYPE_USER_RINGBUF`):
//! the kernel's record format and both ends' algorithms
//! (`kernel/bpf/ringbuf.c`, libbpf's `ringbuf.c`), shared by the guest
//! runtime's helpers and the host's consumer and producer.
//!
//! Note [Ring buffer layout]
//! ```text
//!  offset from the ring's start (all seen through one MapMemory view)
//!  0x0000  ┌──────────────────────────────┐ the map's MapHeader (64 B),
//!          │ MapHeader, then RingMeta     │ then the producers' lock, the
//!          │                              │ pending position, the drain
//!          │                              │ flag and the wakeup id
//!  0x1000  ├──────────────────────────────┤
//!          │ consumer position (u64)      │ written by the consumer
//!  0x2000  ├──────────────────────────────┤
//!          │ producer position (u64)      │ written by the producer
//!  0x3000  ├──────────────────────────────┤ DATA_OFFSET
//!          │ data, `size` bytes           │
//!          ├──────────────────────────────┤
//!          │ the same data pages again    │ so that a record that wraps
//!          └──────────────────────────────┘ is contiguous
//! ```
//! Positions are byte counts since the ring was created; a record starts
//! at `DATA_OFFSET + (pos & mask)` with an 8-byte header `{u32 len, u32
//! pg_off}`: `len` is the sample's size with [`BUSY_BIT`] while it is
//! being written and [`DISCARD_BIT`] if it was discarded, and `pg_off` the
//! header's page offset from the ring's start, which is how the kernel
//! (and the guest runtime) find the ring from a sample pointer. Records
//! take `round_up(len + 8, 8)` bytes. Both the guest and the host map the
//! data pages twice, so a record that crosses the end is read and written
//! as one piece.
//!
//! Note [Trusting ring memory]
//! Every word here is shared memory a guest can scribble on. The host
//! keeps its own position (the consumer's for a ring buffer, the
//! producer's for a user ring buffer), reads the other side's through the
//! bounds-checked [`MapMemory`] view and checks it against its own and the
//! ring's size before use: a position that runs backwards or further than
//! the ring holds, a record longer than what was published, all give
//! [`RingError::Corrupt`], never a read outside the view or an endless
//! loop (each step advances by at least 8 bytes and never past a
//! published position). The guest side is as careful, but only hurts
//! itself if fooled.

use crate::layout::PAGE_SIZE;
use crate::maps::def::MAP_HEADER_SIZE;
use crate::maps::{MapError, MapMemory, lock};
use core::sync::atomic::{Ordering, fence};

/// Bytes of a record's header.
pub const HDR_SIZE: u64 = 8;
/// Set in a header's `len` while the record is reserved, not committed.
pub const BUSY_BIT: u32 = 1 << 31;
/// Set in a header's `len` when the record was discarded.
pub const DISCARD_BIT: u32 = 1 << 30;
/// The kernel's `RINGBUF_MAX_RECORD_SZ`.
pub const MAX_RECORD_SIZE: u64 = (u32::MAX / 4) as u64;

/// `BPF_RB_NO_WAKEUP`: do not notify the consumer of this commit.
pub const RB_NO_WAKEUP: u64 = 1;
/// `BPF_RB_FORCE_WAKEUP`: notify the consumer whatever its position.
pub const RB_FORCE_WAKEUP: u64 = 2;

/// `bpf_ringbuf_query` flags: `BPF_RB_AVAIL_DATA`.
pub const RB_AVAIL_DATA: u64 = 0;
/// `BPF_RB_RING_SIZE`.
pub const RB_RING_SIZE: u64 = 1;
/// `BPF_RB_CONS_POS`.
pub const RB_CONS_POS: u64 = 2;
/// `BPF_RB_PROD_POS`.
pub const RB_PROD_POS: u64 = 3;

/// The kernel's `BPF_MAX_USER_RINGBUF_SAMPLES`: most samples one
/// `bpf_user_ringbuf_drain` consumes.
pub const MAX_USER_RINGBUF_SAMPLES: u64 = 128 * 1024;

/// The producers' lock (u32, Note [Map locks]).
pub const LOCK_OFFSET: usize = MAP_HEADER_SIZE;
/// The user ring buffer's "a drain is running" flag (u32).
pub const DRAIN_BUSY_OFFSET: usize = LOCK_OFFSET + 4;
/// The oldest position not yet committed or discarded, as far as the last
/// reserve knows (u64).
pub const PENDING_POS_OFFSET: usize = LOCK_OFFSET + 8;
/// The value the guest writes to `shm::ports::WAKEUP_PORT` to notify
/// this ring's consumer (u32).
pub const WAKEUP_ID_OFFSET: usize = LOCK_OFFSET + 16;
/// Reserves that found the ring full, or the sample larger than it (u64,
/// informative: the host reports it per invocation).
pub const DROPS_OFFSET: usize = LOCK_OFFSET + 24;
/// The consumer position as the producers last read it (u64, Note
/// [Consumer position seen]).
pub const CONSUMER_SEEN_OFFSET: usize = LOCK_OFFSET + 32;
/// The consumer position (u64).
pub const CONSUMER_POS_OFFSET: usize = PAGE_SIZE as usize;
/// Whether the consumer wants wakeups (u32, [`CONSUMER_KERNEL_RULE`],
/// [`CONSUMER_AWAKE`] or [`CONSUMER_ASLEEP`]; Note [Consumer state]).
pub const CONSUMER_STATE_OFFSET: usize = CONSUMER_POS_OFFSET + 8;
/// The kernel's rule alone decides wakeups (a consumer that never said).
pub const CONSUMER_KERNEL_RULE: u32 = 0;
/// The consumer is running and will look again without being woken.
pub const CONSUMER_AWAKE: u32 = 1;
/// The consumer sleeps until woken: the kernel's rule decides.
pub const CONSUMER_ASLEEP: u32 = 2;
/// The producer position (u64).
pub const PRODUCER_POS_OFFSET: usize = 2 * PAGE_SIZE as usize;
/// The first data byte.
pub const DATA_OFFSET: usize = 3 * PAGE_SIZE as usize;
/// The kernel's `DYNPTR_MAX_SIZE` (`crate::dynptr`): a user ring buffer's samples reach
/// programs as dynptrs, which cannot be larger.
const DYNPTR_MAX_SIZE: u64 = crate::dynptr::DYNPTR_MAX_SIZE as u64;
/// Largest ring: the maps region holds at most 1 GiB, and the ring takes
/// its data once there (and twice in the address space).
pub const MAX_RING_SIZE: u64 = 1 << 28;

/// Why a ring operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The other side's words do not add up: what is wrong.
    Corrupt(&'static str),
    /// The ring's memory refused an access (a view smaller than the ring).
    Memory(MapError),
}

impl From<MapError> for RingError {
    fn from(e: MapError) -> Self {
        RingError::Memory(e)
    }
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::Corrupt(what) => write!(f, "ring buffer corrupt: {what}"),
            RingError::Memory(e) => write!(f, "ring buffer memory: {e}"),
        }
    }
}

/// A ring's data size, checked: a power of two, a whole number of pages,
/// at most [`MAX_RING_SIZE`] (the kernel's `ringbuf_map_alloc` rules and
/// ours).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    size: u64,
}

impl RingGeometry {
    /// The geometry of a ring of `size` data bytes (`max_entries`).
    pub const fn new(size: u64) -> Option<RingGeometry> {
        if size.is_power_of_two() && size >= PAGE_SIZE && size <= MAX_RING_SIZE {
            Some(RingGeometry { size })
        } else {
            None
        }
    }

    /// Data bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// `size - 1`: a position's offset in the data is `pos & mask`.
    pub const fn mask(&self) -> u64 {
        self.size - 1
    }

    /// Bytes of address space the ring takes: three pages, then the data
    /// twice.
    pub const fn span(&self) -> u64 {
        DATA_OFFSET as u64 + 2 * self.size
    }

    /// Bytes of memory behind the ring after its 64-byte map header: the
    /// rest of the first page, the two position pages and the data once.
    pub const fn storage_size(&self) -> u64 {
        DATA_OFFSET as u64 + self.size - MAP_HEADER_SIZE as u64
    }

    /// Offset of the header of the record at position `pos`.
    const fn header_off(&self, pos: u64) -> usize {
        DATA_OFFSET + (pos & self.mask()) as usize
    }
}

/// Bytes a record of a `len`-byte sample takes, header included.
pub const fn record_size(len: u32) -> u64 {
    (len as u64 + HDR_SIZE).next_multiple_of(8)
}

// ---------------------------------------------------------------------------
// BPF_MAP_TYPE_RINGBUF: programs produce (guest), the host consumes.

// Note [Consumer state]
// In the kernel a wakeup is an irq_work, cheap; here it is a VM exit
// (about 20 µs on a nested host), paid by the producing vCPU. Under the
// kernel's rule alone, a consumer that keeps up is woken for nearly every
// batch, however briefly it waits. So a consumer may say in the word at
// CONSUMER_STATE_OFFSET, on its own page, that it is awake — running, and
// going to look again — and a commit then wakes nobody (unless forced).
// Before it sleeps it says it is asleep, with a full barrier, and looks
// once more: a producer's commit (a full barrier too) either sees it
// asleep and wakes it, or happened before that last look, which sees the
// record. A consumer that never writes the word gets the kernel's rule.

/// `bpf_ringbuf_reserve`: room for a `len`-byte sample, as the kernel's
/// `__bpf_ringbuf_reserve`. Returns the sample's offset (after its header,
/// marked busy), or `None` when it does not fit — never waits for room.
/// Producers on several vCPUs serialise on the ring's lock; a lock that
/// stays taken past the view's spin budget is `Busy`.
pub fn reserve(
    g: &RingGeometry,
    mem: &impl MapMemory,
    len: u64,
) -> Result<Option<usize>, MapError> {
    let reserved = reserve_inner(g, mem, len)?;
    if reserved.is_none() {
        count_drop(mem)?;
    }
    Ok(reserved)
}

/// Adds one to the ring's drop counter.
fn count_drop(mem: &impl MapMemory) -> Result<(), MapError> {
    let mut drops = mem.load_u64(DROPS_OFFSET)?;
    // Bounded: each failure means another vCPU's add succeeded.
    for _ in 0..64 {
        match mem.cas_u64(DROPS_OFFSET, drops, drops.wrapping_add(1))? {
            Ok(_) => return Ok(()),
            Err(found) => drops = found,
        }
    }
    Ok(())
}

// Note [Consumer position seen]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The consumer position is a cache line the consumer writes as it goes;
// a producer that read it on every reserve (as the kernel's does) would
// miss in its cache each time the consumer had moved, a cross-core
// transfer per batch of records the consumer publishes. The producers
// keep the position they last read beside their lock, and read the
// consumer's only when the ring looks full by the kept one. The consumer
// only ever moves forward, so the kept position is at most the real one:
// the ring can look fuller than it is, never emptier, and a record is
// never written over one the consumer has not read. (A consumer that
// starts over at the producer's position moves it forward too.) The
// same goes for a commit with BPF_RB_NO_WAKEUP, which has no need of
// the consumer's words at all.

fn reserve_inner(
    g: &RingGeometry,
    mem: &impl MapMemory,
    len: u64,
) -> Result<Option<usize>, MapError> {
    if len > MAX_RECORD_SIZE {
        return Ok(None);
    }
    let total = (len + HDR_SIZE).next_multiple_of(8);
    if total > g.size {
        return Ok(None);
    }
    lock::with_lock(mem, LOCK_OFFSET, || {
        let prod = mem.load_u64(PRODUCER_POS_OFFSET)?;
        let mut pend = mem.load_u64(PENDING_POS_OFFSET)?;
        if pend > prod || prod - pend > g.size {
            // Scribbled: only ever forget records, never walk far.
            pend = prod;
        }
        // Move past every record committed since the last reserve.
        while pend < prod {
            let len = mem.load_u32(g.header_off(pend))?;
            if len & BUSY_BIT != 0 {
                break;
            }
            pend += record_size(len & !DISCARD_BIT);
        }
        mem.store_u64(PENDING_POS_OFFSET, pend)?;
        let new_prod = prod + total;
        // The producer at most size - 1 bytes ahead of the oldest record
        // still being written, and of the consumer.
        if new_prod.wrapping_sub(pend) > g.mask() {
            return Ok(None);
        }
        let seen = mem.load_u64(CONSUMER_SEEN_OFFSET)?;
        if new_prod.wrapping_sub(seen) > g.mask() {
            let cons = mem.load_u64(CONSUMER_POS_OFFSET)?;
            mem.store_u64(CONSUMER_SEEN_OFFSET, cons)?;
            if new_prod.wrapping_sub(cons) > g.mask() {
                return Ok(None);
            }
        }
        let hdr = g.header_off(prod);
        mem.store_u32(hdr, len as u32 | BUSY_BIT)?;
        mem.store_u32(hdr + 4, (hdr as u64 / PAGE_SIZE) as u32)?;
        // Publishes the busy header with the position (Release).
        mem.store_u64(PRODUCER_POS_OFFSET, new_prod)?;
        Ok(Some(hdr + HDR_SIZE as usize))
    })
}

/// `bpf_ringbuf_submit` / `_discard` of the sample at `sample` (an offset
/// [`reserve`] returned): clears the busy bit (sets the discard bit) and
/// returns whether to notify the consumer — it asked (`flags` has
/// [`RB_FORCE_WAKEUP`]), or it has consumed everything before this record
/// and so may be waiting for it (unless [`RB_NO_WAKEUP`]).
pub fn commit(
    g: &RingGeometry,
    mem: &impl MapMemory,
    sample: usize,
    discard: bool,
    flags: u64,
) -> Result<bool, MapError> {
    let hdr = sample
        .checked_sub(HDR_SIZE as usize)
        .ok_or(MapError::OutOfBounds)?;
    if hdr < DATA_OFFSET || hdr >= DATA_OFFSET + g.size as usize || !hdr.is_multiple_of(8) {
        return Err(MapError::OutOfBounds);
    }
    // A compare-exchange, not a store: it is a full barrier, so the
    // consumer position read below is not older than the header write (or
    // a consumer that just caught up could miss both the record and the
    // wakeup).
    let mut len = mem.load_u32(hdr)?;
    loop {
        let mut new = len & !BUSY_BIT;
        if discard {
            new |= DISCARD_BIT;
        }
        match mem.cas_u32(hdr, len, new)? {
            Ok(_) => break,
            Err(found) => len = found,
        }
    }
    if flags & RB_FORCE_WAKEUP != 0 {
        return Ok(true);
    }
    if flags & RB_NO_WAKEUP != 0 {
        // Note [Consumer position seen].
        return Ok(false);
    }
    let rec_pos = (hdr - DATA_OFFSET) as u64;
    let cons = mem.load_u64(CONSUMER_POS_OFFSET)? & g.mask();
    let awake = mem.load_u32(CONSUMER_STATE_OFFSET)? == CONSUMER_AWAKE;
    Ok(cons == rec_pos && !awake)
}

/// `bpf_ringbuf_query`: what `flags` asks for, as the kernel (0 for an
/// unknown flag).
pub fn query(g: &RingGeometry, mem: &impl MapMemory, flags: u64) -> Result<u64, MapError> {
    Ok(match flags {
        RB_AVAIL_DATA => {
            let cons = mem.load_u64(CONSUMER_POS_OFFSET)?;
            let prod = mem.load_u64(PRODUCER_POS_OFFSET)?;
            prod.wrapping_sub(cons)
        }
        RB_RING_SIZE => g.size,
        RB_CONS_POS => mem.load_u64(CONSUMER_POS_OFFSET)?,
        RB_PROD_POS => mem.load_u64(PRODUCER_POS_OFFSET)?,
        _ => 0,
    })
}

/// The consumer says whether it wants wakeups (Note [Consumer state]),
/// ordered before whatever it reads next.
pub fn set_consumer_state(mem: &impl MapMemory, state: u32) -> Result<(), MapError> {
    mem.store_u32(CONSUMER_STATE_OFFSET, state)?;
    fence(Ordering::SeqCst);
    Ok(())
}

/// What the consumer finds at its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing was produced past the position.
    Empty,
    /// The record there is still being written.
    Busy,
    /// A committed record: its sample's offset and length, and the bytes
    /// the whole record takes.
    Record {
        /// Offset of the sample in the view.
        off: usize,
        /// Sample length.
        len: u32,
        /// Bytes to advance past it.
        total: u64,
    },
    /// A discarded record, to skip.
    Discarded {
        /// Bytes to advance past it.
        total: u64,
    },
}

/// The record at consumer position `cons` (the consumer's own copy), the
/// producer position read and checked against it (Note [Trusting ring
/// memory]).
pub fn peek(g: &RingGeometry, mem: &impl MapMemory, cons: u64) -> Result<Next, RingError> {
    let prod = producer_position(g, mem, cons)?;
    record_at(g, mem, cons, prod)
}

/// The producer position, checked against the consumer's own position
/// `cons`: not behind it, at most the ring's size ahead, both 8-byte
/// aligned. A consumer reads it once for a batch of records
/// ([`record_at`]): every read of the producer's line is a cache miss the
/// producer pays for too.
pub fn producer_position(
    g: &RingGeometry,
    mem: &impl MapMemory,
    cons: u64,
) -> Result<u64, RingError> {
    let prod = mem.load_u64(PRODUCER_POS_OFFSET)?;
    if prod < cons {
        return Err(RingError::Corrupt("producer position moved backwards"));
    }
    if prod - cons > g.size {
        return Err(RingError::Corrupt("producer position beyond the ring"));
    }
    if !prod.is_multiple_of(8) || !cons.is_multiple_of(8) {
        return Err(RingError::Corrupt("position not 8-byte aligned"));
    }
    Ok(prod)
}

/// The record at `cons`, given a producer position `prod` that
/// [`producer_position`] returned for a consumer position at or before
/// `cons` (so `cons <= prod`).
pub fn record_at(
    g: &RingGeometry,
    mem: &impl MapMemory,
    cons: u64,
    prod: u64,
) -> Result<Next, RingError> {
    if cons >= prod {
        return Ok(Next::Empty);
    }
    let hdr = g.header_off(cons);
    let word = mem.load_u32(hdr)?;
    if word & BUSY_BIT != 0 {
        return Ok(Next::Busy);
    }
    let len = word & !DISCARD_BIT;
    let total = record_size(len);
    if total > prod - cons {
        return Err(RingError::Corrupt("record longer than what was produced"));
    }
    Ok(if word & DISCARD_BIT != 0 {
        Next::Discarded { total }
    } else {
        Next::Record {
            off: hdr + HDR_SIZE as usize,
            len,
            total,
        }
    })
}

/// Publishes the consumer's new position, then orders it before whatever
/// the consumer reads next (a producer's header and the position it reads
/// after committing are the other half of this handshake: Note on
/// [`commit`]).
pub fn consumed(mem: &impl MapMemory, cons: u64) -> Result<(), MapError> {
    mem.store_u64(CONSUMER_POS_OFFSET, cons)?;
    fence(Ordering::SeqCst);
    Ok(())
}

/// Host side, once no vCPU runs (after a reset): marks discarded every
/// record still busy between the consumer and the producer positions.
/// Their producers were stopped and will never commit them, and a busy
/// record stops the consumer for good. Returns how many; bounded by the
/// ring's size (Note [Trusting ring memory]).
pub fn abandon_busy(g: &RingGeometry, mem: &impl MapMemory) -> Result<u32, RingError> {
    let cons = mem.load_u64(CONSUMER_POS_OFFSET)?;
    let prod = mem.load_u64(PRODUCER_POS_OFFSET)?;
    if cons > prod || prod - cons > g.size || !cons.is_multiple_of(8) {
        return Err(RingError::Corrupt("positions do not add up"));
    }
    let mut pos = cons;
    let mut abandoned = 0;
    while pos < prod {
        let hdr = g.header_off(pos);
        let word = mem.load_u32(hdr)?;
        let total = record_size(word & !(BUSY_BIT | DISCARD_BIT));
        if total > prod - pos {
            return Err(RingError::Corrupt("record longer than what was produced"));
        }
        if word & BUSY_BIT != 0 {
            mem.store_u32(hdr, (word & !BUSY_BIT) | DISCARD_BIT)?;
            abandoned += 1;
        }
        pos += total;
    }
    Ok(abandoned)
}

// ---------------------------------------------------------------------------
// BPF_MAP_TYPE_USER_RINGBUF: the host produces, programs consume.

/// Why a user ring buffer has no room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserReserveError {
    /// The sample can never fit (`E2BIG`).
    TooBig,
    /// Not now: the program has not consumed enough (`ENOSPC`).
    Full,
    /// The consumer position does not add up.
    Ring(RingError),
}

impl From<MapError> for UserReserveError {
    fn from(e: MapError) -> Self {
        UserReserveError::Ring(RingError::Memory(e))
    }
}

/// Host side, libbpf's `user_ring_buffer__reserve`: room for a `len`-byte
/// sample at the producer's own position `prod`. Writes the busy header
/// and publishes the new producer position; returns the sample's offset
/// and the new position. The consumer position is the guest's and is
/// checked (Note [Trusting ring memory]).
pub fn user_reserve(
    g: &RingGeometry,
    mem: &impl MapMemory,
    prod: u64,
    len: u32,
) -> Result<(usize, u64), UserReserveError> {
    let total = record_size(len);
    if u64::from(len) > DYNPTR_MAX_SIZE || total > g.size {
        return Err(UserReserveError::TooBig);
    }
    let cons = mem.load_u64(CONSUMER_POS_OFFSET)?;
    if cons > prod || prod - cons > g.size {
        return Err(UserReserveError::Ring(RingError::Corrupt(
            "consumer position outside what was produced",
        )));
    }
    if g.size - (prod - cons) < total {
        return Err(UserReserveError::Full);
    }
    let hdr = g.header_off(prod);
    mem.store_u32(hdr, len | BUSY_BIT)?;
    mem.store_u32(hdr + 4, 0)?;
    let new_prod = prod + total;
    mem.store_u64(PRODUCER_POS_OFFSET, new_prod)?;
    Ok((hdr + HDR_SIZE as usize, new_prod))
}

/// Host side: commits (or discards) the sample at `sample` that
/// [`user_reserve`] returned for a `len`-byte sample.
pub fn user_commit(
    mem: &impl MapMemory,
    sample: usize,
    len: u32,
    discard: bool,
) -> Result<(), MapError> {
    let hdr = sample
        .checked_sub(HDR_SIZE as usize)
        .ok_or(MapError::OutOfBounds)?;
    mem.store_u32(hdr, if discard { len | DISCARD_BIT } else { len })
}

/// What a draining program finds at the consumer position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserNext {
    /// Nothing (more) to consume, or the next sample is still busy.
    Empty,
    /// A sample: its offset, length and the bytes to advance past it.
    Sample {
        /// Offset of the sample in the view.
        off: usize,
        /// Length.
        len: u32,
        /// Bytes to advance past it.
        total: u64,
    },
    /// A discarded sample, already skipped (the consumer position moved).
    Discarded,
}

/// Guest side, the kernel's `__bpf_user_ringbuf_peek`: the sample at the
/// consumer position. Errors are the kernel's: -EINVAL for a producer
/// position that is misaligned or a sample longer than what was produced,
/// -E2BIG for one larger than the ring or a dynptr; and -EINVAL for a
/// producer more than the ring's size ahead.
pub fn user_peek(g: &RingGeometry, mem: &impl MapMemory) -> Result<UserNext, i64> {
    let fault = |_| crate::errno::EFAULT;
    let prod = mem.load_u64(PRODUCER_POS_OFFSET).map_err(fault)?;
    if !prod.is_multiple_of(8) {
        return Err(crate::errno::EINVAL);
    }
    let cons = mem.load_u64(CONSUMER_POS_OFFSET).map_err(fault)?;
    if cons >= prod {
        return Ok(UserNext::Empty);
    }
    if prod - cons > g.size {
        // Stricter than the kernel, which relies on the sample cap alone.
        return Err(crate::errno::EINVAL);
    }
    let hdr = g.header_off(cons);
    let word = mem.load_u32(hdr).map_err(fault)?;
    let flags = word & (BUSY_BIT | DISCARD_BIT);
    let len = word & !flags;
    let total = record_size(len);
    if total > prod - cons {
        return Err(crate::errno::EINVAL);
    }
    if total > g.size || u64::from(len) > DYNPTR_MAX_SIZE {
        return Err(crate::errno::E2BIG);
    }
    if flags & DISCARD_BIT != 0 {
        mem.store_u64(CONSUMER_POS_OFFSET, cons + total)
            .map_err(fault)?;
        return Ok(UserNext::Discarded);
    }
    if flags & BUSY_BIT != 0 {
        return Ok(UserNext::Empty);
    }
    Ok(UserNext::Sample {
        off: hdr + HDR_SIZE as usize,
        len,
        total,
    })
}

/// Guest side: the sample [`user_peek`] returned was consumed.
pub fn user_release(mem: &impl MapMemory, total: u64) -> Result<(), MapError> {
    let cons = mem.load_u64(CONSUMER_POS_OFFSET)?;
    mem.store_u64(CONSUMER_POS_OFFSET, cons.wrapping_add(total))
}

#[cfg(test)]
#[path = "ringbuf_tests.rs"]
mod tests;
