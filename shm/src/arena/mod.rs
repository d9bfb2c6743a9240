//! `BPF_MAP_TYPE_ARENA` page bookkeeping, shared by the guest runtime's
//! kfuncs (`bpf_arena_alloc_pages`, `bpf_arena_free_pages`,
//! `bpf_arena_reserve_pages`) and the host (fault-in, release), with the
//! kernel's semantics (`kernel/bpf/arena.c`); the design is
//! docs/arena-experiments.md's.
//!
//! An arena is a window of `npages` pages at the same virtual address in
//! guest and host (a clone's host maps it a fixed offset away: Note [Arena
//! clones] in `vmm::arena`), backed by a memfd; page j of the window is
//! memfd page j and guest-physical `gpa_base + j * 4096`. Two guest
//! regions, both user-RW and seen by the host, describe which pages are in
//! use:
//!
//! ```text
//!  state region                                    (ArenaHeader, then u8s)
//!  ┌────────────────────────────────────────────────────────────────────┐
//!  │ 0  magic "ARNA"     4  npages     8  gpa_base    16 user_vm_start  │ written once
//!  │ 24 ptes (guest address of page 0's PTE)                            │ by the host,
//!  │ 32 states_len = npages rounded up to 8           36 reserved0 (0)  │ checked by the guest
//!  ├────────────────────────────────────────────────────────────────────┤
//!  │ 40 lock   44 cursor (first-fit hint)   48 allocated   52 freed     │ changed under
//!  │ 56 reserved1 (0, 0)                                                │ the lock
//!  ├────────────────────────────────────────────────────────────────────┤
//!  │ 64 state[0] state[1] … state[npages-1]   (u8 each) … padding to 8  │
//!  └────────────────────────────────────────────────────────────────────┘
//!
//!  PTE array: the window's leaf page tables, contiguous   (at `ptes`)
//!  ┌──────────┬──────────┬─────┬────────────────┐
//!  │ pte[0]   │ pte[1]   │  …  │ pte[npages-1]  │  u64: 0, or
//!  └──────────┴──────────┴─────┴────────────────┘  gpa_base + j·4096 | pte::ARENA_FLAGS
//! ```
//!
//! Note [Arena page states]
//! ```text
//!  The cycle of a page:
//!
//!        alloc (PTE written)          free (PTE cleared)
//!  FREE ─────────────────────► ALLOCATED ─────────────────► FREED
//!   ▲                                                         │ take_freed_for_release
//!   │            finish_release (memory punched)              ▼ (host, under the lock)
//!   └─────────────────────────────────────────────────── RELEASING
//!
//!  Every transition, by operation (– : left as it is, or refused):
//!
//!  from \ by   alloc        free     reserve    fault_in    take_freed…  finish / cancel
//!  FREE        ALLOCATED    –        RESERVED   ALLOCATED   –            –
//!  ALLOCATED   –            FREED    –          –           –            –
//!  RESERVED    –            FREED    –          ALLOCATED*  –            –
//!  FREED       ALLOCATED*   –        RESERVED   ALLOCATED*  RELEASING    –
//!  RELEASING   –            –        –          –           –            FREE / FREED
//!
//!  * the page may hold old data: the caller zeroes it
//! ```
//! FREE pages read as zeros (holes of the memfd, or a clone's zeroed
//! pages), so an allocation hands them out as they are. A freed page keeps
//! its memory (and any stale translation a vCPU has) until the host
//! releases it: punching it out of the memfd frees the memory and makes
//! KVM drop every vCPU's translation, which is the TLB shootdown the guest
//! cannot do cheaply (docs/arena-experiments.md, "Release = punch = shootdown"; a
//! clone, whose memfd is its snapshot's, drops its copies and zeroes them
//! instead, Note [Arena clones] in `vmm::arena`).
//! Until then an allocation may take it back; it still holds old data,
//! so [`AllocResult::needs_zeroing`] lists it. A byte that is none of the
//! five states reads as ALLOCATED: never handed out, never released.
//!
//! Note [Trusting arena memory]
//! Both regions are guest memory a program can scribble over. As for maps
//! (Note [Trusting map memory] in `shm::maps`): the host keeps its own
//! [`ArenaGeometry`] and never re-reads the header; the guest rebuilds
//! one from the header on each call ([`open_guest_arena`]), which only
//! lets a program confuse itself. Every access goes through
//! [`MapMemory`] views, bounds-checked; every
//! page index comes from the caller's geometry, never from the regions
//! (the cursor is clamped and is only a hint, the counters are only
//! informative). Every operation is bounded by O(`npages`): no input makes
//! them hang, panic or leave the regions. The host's release changes only
//! bytes that are exactly FREED, below its own `npages`.
//!
//! Note [Releasing arena pages]
//! Every state change happens under the header's spin lock (the protocol
//! of `shm::maps::lock`: the guest spins long, the host briefly and gives
//! up with [`ArenaError::Busy`]); its Acquire/Release pairs order the
//! state bytes and PTEs written under it. The host does not hold it while
//! punching: [`take_freed_for_release`] moves FREED pages to RELEASING
//! under the lock and lists them; the host punches them
//! (`fallocate(PUNCH_HOLE)`; a clone discards them its own way) with the
//! lock free, then [`finish_release`] makes them FREE. Nobody else
//! touches a RELEASING page (an allocation skips it, as an allocated
//! page), so a punch never races a re-allocation. The guest could break this only by writing
//! state bytes itself, which can only zero its own pages.
//!
//! The kfuncs translate addresses with [`ArenaGeometry::page_index`] and
//! keep the kernel's argument checks that are about addresses (an
//! unaligned address makes `bpf_arena_alloc_pages` return NULL and
//! `bpf_arena_reserve_pages` return 0 without reserving, a NULL pointer
//! makes `bpf_arena_free_pages` do nothing); the rest is here.

pub mod alloc;
pub mod free;
pub mod geometry;
pub mod pte;
pub mod state;
#[cfg(test)]
mod tests;

pub use alloc::{AllocResult, FaultIn, ZeroRanges, alloc, fault_in, is_allocated, reserve};
pub use free::{
    ReleaseBatch, cancel_release, finish_release, free, freed_hint, take_freed_for_release,
};
pub use geometry::{ArenaGeometry, ArenaHeader, init, open_guest_arena};
pub use state::PageState;

use crate::errno;
use crate::maps::{MapError, MapMemory, lock};
use core::fmt;

/// Pages `first .. first + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageRange {
    /// First page.
    pub first: u32,
    /// Pages.
    pub count: u32,
}

impl PageRange {
    /// One past the last page.
    pub fn end(&self) -> u32 {
        self.first + self.count
    }

    /// Whether `page` is in the range.
    pub fn contains(&self, page: u32) -> bool {
        self.first <= page && page < self.end()
    }
}

/// Why an arena operation failed. [`ArenaError::errno`] gives what a
/// kfunc that returns an error (`bpf_arena_reserve_pages`) returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaError {
    /// A count, page or geometry the kernel refuses (-EINVAL): the reason.
    InvalidArgument(&'static str),
    /// No run of free pages long enough (-ENOSPC; the kfunc returns NULL).
    NoSpace,
    /// A page of the requested range is allocated, reserved or being
    /// released (-EBUSY).
    RangeInUse,
    /// The arena lock stayed taken past the spin budget (-EBUSY).
    Busy,
    /// The header does not describe a valid arena (-EFAULT).
    Corrupt,
    /// A region is smaller than the geometry says, or an access was
    /// misaligned (-EFAULT).
    OutOfBounds,
}

impl ArenaError {
    /// The negative errno for this error.
    pub const fn errno(self) -> i64 {
        match self {
            ArenaError::InvalidArgument(_) => errno::EINVAL,
            ArenaError::NoSpace => errno::ENOSPC,
            ArenaError::RangeInUse | ArenaError::Busy => errno::EBUSY,
            ArenaError::Corrupt | ArenaError::OutOfBounds => errno::EFAULT,
        }
    }
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArenaError::InvalidArgument(why) => write!(f, "Invalid arena argument: {why}"),
            ArenaError::NoSpace => f.write_str("No free arena pages in a long enough run"),
            ArenaError::RangeInUse => f.write_str("Arena pages are in use"),
            ArenaError::Busy => f.write_str("Arena lock stayed taken"),
            ArenaError::Corrupt => f.write_str("Arena header is corrupt"),
            ArenaError::OutOfBounds => f.write_str("Access outside the arena's regions"),
        }
    }
}

impl core::error::Error for ArenaError {}

impl From<MapError> for ArenaError {
    fn from(e: MapError) -> ArenaError {
        match e {
            MapError::Busy => ArenaError::Busy,
            MapError::OutOfBounds => ArenaError::OutOfBounds,
            _ => ArenaError::Corrupt,
        }
    }
}

/// Runs `f` holding the arena's lock, and releases it whatever `f`
/// returns (Note [Releasing arena pages]).
fn locked<S: MapMemory, T>(
    states: &S,
    f: impl FnOnce() -> Result<T, ArenaError>,
) -> Result<T, ArenaError> {
    lock::lock(states, geometry::LOCK_OFF)?;
    let result = f();
    lock::unlock(states, geometry::LOCK_OFF)?;
    result
}
