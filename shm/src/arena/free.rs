//! Giving pages back: `bpf_arena_free_pages` in the guest, and the host's
//! release of freed pages (Note [Releasing arena pages]).

use super::geometry::{ALLOCATED_OFF, ArenaGeometry, FREED_OFF};
use super::pte;
use super::state::{self, FREED, PageState, bytes_equal_in};
use super::{ArenaError, PageRange, locked};
use crate::maps::MapMemory;

/// Most pages one [`take_freed_for_release`] call scans while holding the
/// lock, so vCPUs waiting for it wait for at most this much (a 64 KiB
/// scan, tens of microseconds).
pub const RELEASE_SCAN_PAGES: u32 = 1 << 16;

/// `bpf_arena_free_pages`: frees the pages of `first .. first + count`
/// (clipped to the arena) that are allocated or reserved, as the kernel,
/// and skips the others. An allocated page's PTE is cleared and it
/// becomes FREED, waiting for the host's release (no TLB flush: the
/// release is the shootdown, Note [Releasing arena pages]); a reserved
/// page becomes FREED too, since it may have been reserved while FREED
/// and hold old data. Returns how many pages became FREED.
pub fn free(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    ptes: &impl MapMemory,
    first: u32,
    count: u32,
) -> Result<u32, ArenaError> {
    geom.check_views(states, ptes)?;
    let n = geom.npages();
    if first >= n || count == 0 {
        return Ok(0);
    }
    let end = first + count.min(n - first);
    locked(states, || {
        let (mut freed, mut allocated, mut lowest) = (0u32, 0u32, None);
        let mut page = first;
        while page < end {
            // A word of FREE pages (FREE is 0; the untouched part of a big
            // range) is skipped whole.
            if page.is_multiple_of(8) && end - page >= 8 && state::load_word(states, page / 8)? == 0
            {
                page += 8;
                continue;
            }
            match state::get(states, page)? {
                PageState::Allocated => {
                    ptes.store_u64(8 * page as usize, pte::NOT_PRESENT)?;
                    allocated += 1;
                }
                PageState::Reserved => {}
                PageState::Free | PageState::Freed | PageState::Releasing => {
                    page += 1;
                    continue;
                }
            }
            state::set(states, page, PageState::Freed)?;
            lowest.get_or_insert(page);
            freed += 1;
            page += 1;
        }
        state::add_counter(states, ALLOCATED_OFF, -i64::from(allocated))?;
        state::add_counter(states, FREED_OFF, i64::from(freed))?;
        if let Some(low) = lowest {
            state::lower_cursor(states, n, low)?;
        }
        Ok(freed)
    })
}

/// What one [`take_freed_for_release`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseBatch {
    /// How many ranges it wrote at the start of the buffer.
    pub ranges: usize,
    /// Where the next call should start, or `None` if the scan reached
    /// the end of the arena.
    pub resume: Option<u32>,
}

/// Host side: moves FREED pages from page `from` on to RELEASING, under
/// the lock, and lists them in `out` as ranges of consecutive pages, for
/// the host to punch without holding the lock and then hand to
/// [`finish_release`]. Stops when `out` is full or after
/// [`RELEASE_SCAN_PAGES`] pages; [`ReleaseBatch::resume`] says where to go
/// on. Every index comes from the host's own geometry: whatever the guest
/// wrote, only pages below `npages` whose byte was FREED are listed and
/// changed.
pub fn take_freed_for_release(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    from: u32,
    out: &mut [PageRange],
) -> Result<ReleaseBatch, ArenaError> {
    geom.check_states(states)?;
    if out.is_empty() {
        return Err(ArenaError::InvalidArgument("no room for a range"));
    }
    let n = geom.npages();
    if from >= n {
        return Ok(ReleaseBatch {
            ranges: 0,
            resume: None,
        });
    }
    let to = from.saturating_add(RELEASE_SCAN_PAGES).min(n);
    locked(states, || {
        let mut ranges = 0usize;
        let mut taken = 0u32;
        let mut resume = (to < n).then_some(to);
        'scan: for word in from / 8..to.div_ceil(8) {
            let bytes = state::load_word(states, word)?;
            let mut mask = bytes_equal_in(bytes, FREED, word, from, to);
            while mask != 0 {
                let page = word * 8 + mask.trailing_zeros();
                mask &= mask - 1;
                if ranges > 0 && out[ranges - 1].end() == page {
                    out[ranges - 1].count += 1;
                } else if ranges == out.len() {
                    resume = Some(page);
                    break 'scan;
                } else {
                    out[ranges] = PageRange {
                        first: page,
                        count: 1,
                    };
                    ranges += 1;
                }
                state::set(states, page, PageState::Releasing)?;
                taken += 1;
            }
        }
        state::add_counter(states, FREED_OFF, -i64::from(taken))?;
        Ok(ReleaseBatch { ranges, resume })
    })
}

/// Host side, after punching the pages of `ranges` out of the arena's
/// memory: makes them FREE (they read as zeros now). Only pages still
/// RELEASING change; ranges are clipped to the arena. Returns how many
/// pages became FREE.
pub fn finish_release(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    ranges: &[PageRange],
) -> Result<u32, ArenaError> {
    end_release(geom, states, ranges, PageState::Free)
}

/// Host side, when punching failed: puts the pages of `ranges` that are
/// still RELEASING back to FREED (a later release tries again). Returns
/// how many pages changed.
pub fn cancel_release(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    ranges: &[PageRange],
) -> Result<u32, ArenaError> {
    end_release(geom, states, ranges, PageState::Freed)
}

fn end_release(
    geom: &ArenaGeometry,
    states: &impl MapMemory,
    ranges: &[PageRange],
    to: PageState,
) -> Result<u32, ArenaError> {
    geom.check_states(states)?;
    let n = geom.npages();
    locked(states, || {
        let (mut changed, mut lowest) = (0u32, u32::MAX);
        for r in ranges {
            let end = r.first.saturating_add(r.count).min(n);
            for page in r.first..end {
                if state::get(states, page)? == PageState::Releasing {
                    state::set(states, page, to)?;
                    lowest = lowest.min(page);
                    changed += 1;
                }
            }
        }
        if to == PageState::Freed {
            state::add_counter(states, FREED_OFF, i64::from(changed))?;
        }
        if changed > 0 {
            state::lower_cursor(states, n, lowest)?;
        }
        Ok(changed)
    })
}

/// The FREED counter: how many pages a release would find, if the guest
/// kept it honest. The host may skip a release pass when it is 0 (a lie
/// only keeps the guest's own freed memory allocated longer).
pub fn freed_hint(states: &impl MapMemory) -> Result<u32, ArenaError> {
    Ok(states.load_u32(FREED_OFF)?)
}
