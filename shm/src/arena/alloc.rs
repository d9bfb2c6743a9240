//! Taking pages: `bpf_arena_alloc_pages`, `bpf_arena_reserve_pages`, and
//! the host's fault-in (`arena_alloc_pages`, `arena_reserve_pages` and
//! `arena_vm_fault` of `kernel/bpf/arena.c`).

use super::geometry::{ALLOCATED_OFF, ArenaGeometry, FREED_OFF};
use super::state::{self, PageState, find_run};
use super::{ArenaError, PageRange, locked};
use crate::maps::MapMemory;

/// How many separate ranges [`ZeroRanges`] lists before it merges.
pub const ZERO_RANGES_MAX: usize = 8;

/// The pages of an allocation that were taken back from FREED and must be
/// zeroed by the caller (FREE pages are holes and read as zeros). At most
/// [`ZERO_RANGES_MAX`] ranges: past that, the last range is extended to
/// the end of the last FREED page, so it may cover some FREE pages too —
/// zeroing those is harmless, only slower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ZeroRanges {
    ranges: [PageRange; ZERO_RANGES_MAX],
    len: usize,
}

impl ZeroRanges {
    /// The ranges, in page order.
    pub fn as_slice(&self) -> &[PageRange] {
        &self.ranges[..self.len]
    }

    /// Whether no page needs zeroing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pages to zero.
    pub fn pages(&self) -> u32 {
        self.as_slice().iter().map(|r| r.count).sum()
    }

    /// Adds `page`, the next FREED page of the allocation (pages come in
    /// increasing order).
    fn push(&mut self, page: u32) {
        if let Some(last) = self.len.checked_sub(1).map(|i| &mut self.ranges[i])
            && (last.end() == page || self.len == ZERO_RANGES_MAX)
        {
            last.count = page + 1 - last.first;
            return;
        }
        self.ranges[self.len] = PageRange {
            first: page,
            count: 1,
        };
        self.len += 1;
    }
}

/// A successful allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocResult {
    /// The first page; [`ArenaGeometry::user_addr`] gives what the kfunc
    /// returns.
    pub first_page: u32,
    /// Pages allocated, from `first_page` on.
    pub count: u32,
    /// The pages the caller must zero before handing them out.
    pub needs_zeroing: ZeroRanges,
}

/// `bpf_arena_alloc_pages`: takes `count` contiguous pages, at page `at`
/// if given (all of them must be available) or at the lowest run of
/// available pages (Note [Finding free pages]); marks them ALLOCATED and
/// writes their PTEs. Errors: a zero `count` or a range past the end
/// ([`ArenaError::InvalidArgument`]), no run long enough
/// ([`ArenaError::NoSpace`]), a page of `at..at + count` taken
/// ([`ArenaError::RangeInUse`]), the lock ([`ArenaError::Busy`]). The
/// kfunc returns NULL for all of them.
pub fn alloc(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    ptes: &impl MapMemory,
    count: u32,
    at: Option<u32>,
) -> Result<AllocResult, ArenaError> {
    geom.check_views(states, ptes)?;
    let n = geom.npages();
    if count == 0 || count > n {
        return Err(ArenaError::InvalidArgument(
            "page count must be 1 to the arena's size",
        ));
    }
    if at.is_some_and(|p| p > n - count) {
        return Err(ArenaError::InvalidArgument(
            "range past the end of the arena",
        ));
    }
    locked(states, || {
        let first = match at {
            Some(p) => {
                check_available(states, p, count)?;
                p
            }
            None => find_anywhere(states, n, count)?,
        };
        take(geom, states, ptes, first, count)
    })
}

/// `bpf_arena_reserve_pages`: marks `first .. first + count` RESERVED if
/// every page is available (as the kernel, a page freed but not yet
/// released is free), else [`ArenaError::RangeInUse`] (-EBUSY). A zero
/// `count` does nothing; a range past the end is -EINVAL. Reserved pages
/// stay without a PTE until freed.
pub fn reserve(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    first: u32,
    count: u32,
) -> Result<(), ArenaError> {
    geom.check_states(states)?;
    if count == 0 {
        return Ok(());
    }
    if u64::from(first) + u64::from(count) > u64::from(geom.npages()) {
        return Err(ArenaError::InvalidArgument(
            "range past the end of the arena",
        ));
    }
    locked(states, || {
        check_available(states, first, count)?;
        let mut freed = 0;
        for page in first..first + count {
            if state::get(states, page)? == PageState::Freed {
                freed += 1;
            }
            state::set(states, page, PageState::Reserved)?;
        }
        state::add_counter(states, FREED_OFF, -freed)?;
        covered(states, geom.npages(), first, count)
    })
}

/// What [`fault_in`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultIn {
    /// The page was allocated already (or its state byte is unknown).
    Present,
    /// The page is now allocated. With `needs_zeroing`, it may hold old
    /// data (it was FREED, or RESERVED after being freed) and the host
    /// must zero it before anyone reads it.
    Allocated {
        /// Whether the host must zero it.
        needs_zeroing: bool,
    },
}

/// The host touching `page` of the window, as user space faulting in an
/// arena page (`arena_vm_fault`): an unallocated page (FREE, FREED or —
/// as the kernel, which does not check — RESERVED) becomes ALLOCATED
/// with its PTE, so the guest sees the same page. A page being released
/// is [`ArenaError::RangeInUse`]; the host retries after its release.
/// With `BPF_F_SEGV_ON_FAULT` the host asks [`is_allocated`] instead.
pub fn fault_in(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    ptes: &impl MapMemory,
    page: u32,
) -> Result<FaultIn, ArenaError> {
    geom.check_views(states, ptes)?;
    if page >= geom.npages() {
        return Err(ArenaError::InvalidArgument(
            "page past the end of the arena",
        ));
    }
    locked(states, || {
        let needs_zeroing = match state::get(states, page)? {
            PageState::Allocated => return Ok(FaultIn::Present),
            PageState::Releasing => return Err(ArenaError::RangeInUse),
            PageState::Free => false,
            PageState::Freed => {
                state::add_counter(states, FREED_OFF, -1)?;
                true
            }
            PageState::Reserved => true,
        };
        ptes.store_u64(8 * page as usize, geom.pte(page))?;
        state::set(states, page, PageState::Allocated)?;
        state::add_counter(states, ALLOCATED_OFF, 1)?;
        covered(states, geom.npages(), page, 1)?;
        Ok(FaultIn::Allocated { needs_zeroing })
    })
}

/// Whether `page` is allocated (or its state byte is unknown), so the
/// host may touch it without allocating memory. A snapshot, without the
/// lock: a program may free the page just after.
pub fn is_allocated(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    page: u32,
) -> Result<bool, ArenaError> {
    geom.check_states(states)?;
    if page >= geom.npages() {
        return Err(ArenaError::InvalidArgument(
            "page past the end of the arena",
        ));
    }
    Ok(state::get(states, page)? == PageState::Allocated)
}

/// `RangeInUse` unless every page of `first .. first + count` is
/// available (in range: callers check).
fn check_available(states: &impl MapMemory, first: u32, count: u32) -> Result<(), ArenaError> {
    for page in first..first + count {
        if !state::get(states, page)?.is_available() {
            return Err(ArenaError::RangeInUse);
        }
    }
    Ok(())
}

/// The lowest run of `count` available pages (Note [Finding free pages]),
/// moving the hint.
fn find_anywhere(states: &impl MapMemory, npages: u32, count: u32) -> Result<u32, ArenaError> {
    let hint = state::cursor(states, npages)?;
    let mut search = find_run(states, hint, npages, count)?;
    if search.run.is_none() && hint > 0 {
        // The hint was wrong (guest garbage), or the only fitting run
        // straddles it: look from the start.
        search = find_run(states, 0, npages, count)?;
    }
    let Some(first) = search.run else {
        if let Some(low) = search.first_available {
            state::set_cursor(states, low)?;
        }
        return Err(ArenaError::NoSpace);
    };
    // Every page below first_available was checked unavailable; if the
    // run starts there, every page below its end is now allocated.
    let next = match search.first_available {
        Some(low) if low < first => low,
        _ => first + count,
    };
    state::set_cursor(states, next)?;
    Ok(first)
}

/// Marks `first .. first + count` ALLOCATED, all of them available,
/// writes their PTEs, and lists the FREED ones for zeroing.
fn take(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    ptes: &impl MapMemory,
    first: u32,
    count: u32,
) -> Result<AllocResult, ArenaError> {
    let mut zero = ZeroRanges::default();
    for page in first..first + count {
        if state::get(states, page)? == PageState::Freed {
            zero.push(page);
        }
        // The PTE first, with Release: whoever sees ALLOCATED sees it.
        ptes.store_u64(8 * page as usize, geom.pte(page))?;
        state::set(states, page, PageState::Allocated)?;
    }
    state::add_counter(states, FREED_OFF, -i64::from(zero.pages()))?;
    state::add_counter(states, ALLOCATED_OFF, i64::from(count))?;
    covered(states, geom.npages(), first, count)?;
    Ok(AllocResult {
        first_page: first,
        count,
        needs_zeroing: zero,
    })
}

/// `first .. first + count` just became unavailable: if the hint lies in
/// it, every page below its end is unavailable now.
fn covered(states: &impl MapMemory, npages: u32, first: u32, count: u32) -> Result<(), ArenaError> {
    let hint = state::cursor(states, npages)?;
    if first <= hint && hint < first + count {
        state::set_cursor(states, first + count)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ranges_merge_adjacent_pages_and_past_the_limit() {
        let mut z = ZeroRanges::default();
        for p in [3, 4, 5, 9] {
            z.push(p);
        }
        assert_eq!(
            z.as_slice(),
            &[
                PageRange { first: 3, count: 3 },
                PageRange { first: 9, count: 1 }
            ]
        );
        let mut z = ZeroRanges::default();
        for i in 0..12 {
            z.push(2 * i);
        }
        assert_eq!(z.as_slice().len(), ZERO_RANGES_MAX);
        assert_eq!(
            z.as_slice()[7],
            PageRange {
                first: 14,
                count: 9
            }
        );
        // Every pushed page is covered.
        assert!((0..12).all(|i| z.as_slice().iter().any(|r| r.contains(2 * i))));
    }
}
