//! Page states and the word-at-a-time scans over the state array.
//!
//! Note [Finding free pages]
//! Allocation is first fit, as the kernel's range tree behaves for the
//! patterns programs and the kernel's selftests rely on: the first
//! allocation gets the lowest page, a freed page is the next one handed
//! out, gaps fill before the untouched tail. The header's `cursor` is a
//! lower bound on the first FREE or FREED page: an allocation scans from
//! it and moves it past what it took, a free or a release moves it back
//! down. The scan reads the state array eight pages per u64 load and
//! tests all eight bytes at once (SWAR), so runs of allocated pages are
//! skipped a word at a time. The cursor is guest memory: a wrong one can
//! only make a scan start late, so a scan that fails from the cursor is
//! repeated from page 0 — every search is at most two passes over
//! `npages`.

use super::ArenaError;
use super::geometry::{CURSOR_OFF, HEADER_SIZE};
use crate::maps::MapMemory;

/// Never used, or released by the host: its memory is a hole that reads
/// as zeros, its PTE is not present.
pub const FREE: u8 = 0;
/// Allocated by a program or faulted in by the host: PTE present.
pub const ALLOCATED: u8 = 1;
/// Reserved (`bpf_arena_reserve_pages`): never allocated until freed.
pub const RESERVED: u8 = 2;
/// Freed by a program: PTE cleared, memory not yet released (it may
/// still hold old data, and stale translations may still reach it).
pub const FREED: u8 = 3;
/// The host is releasing it (punching its memory out): no one else
/// touches it until the host makes it FREE.
pub const RELEASING: u8 = 4;

/// A page's state, decoded. Any byte that is not one of the five states
/// decodes as [`PageState::Allocated`]: never handed out by an
/// allocation, never released by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// [`FREE`].
    Free,
    /// [`ALLOCATED`], or an unknown byte.
    Allocated,
    /// [`RESERVED`].
    Reserved,
    /// [`FREED`].
    Freed,
    /// [`RELEASING`].
    Releasing,
}

impl PageState {
    /// Decodes a state byte.
    pub const fn from_byte(b: u8) -> PageState {
        match b {
            FREE => PageState::Free,
            RESERVED => PageState::Reserved,
            FREED => PageState::Freed,
            RELEASING => PageState::Releasing,
            _ => PageState::Allocated,
        }
    }

    /// The byte stored for this state.
    pub const fn byte(self) -> u8 {
        match self {
            PageState::Free => FREE,
            PageState::Allocated => ALLOCATED,
            PageState::Reserved => RESERVED,
            PageState::Freed => FREED,
            PageState::Releasing => RELEASING,
        }
    }

    /// Whether an allocation may take the page: FREE, or FREED (which it
    /// must then zero).
    pub const fn is_available(self) -> bool {
        matches!(self, PageState::Free | PageState::Freed)
    }
}

/// Offset of page `page`'s state byte in the state region.
pub(crate) const fn state_off(page: u32) -> usize {
    HEADER_SIZE + page as usize
}

/// The state of `page` (in range: callers check).
pub(crate) fn get(states: &impl MapMemory, page: u32) -> Result<PageState, ArenaError> {
    let mut b = [0u8];
    states.read(state_off(page), &mut b)?;
    Ok(PageState::from_byte(b[0]))
}

/// Sets the state of `page` (in range: callers check).
pub(crate) fn set(states: &impl MapMemory, page: u32, state: PageState) -> Result<(), ArenaError> {
    states.write(state_off(page), &[state.byte()])?;
    Ok(())
}

/// The states of pages `8 * word .. 8 * word + 8`, byte k for page
/// `8 * word + k` (bytes past `npages` are padding: callers mask them).
pub(crate) fn load_word(states: &impl MapMemory, word: u32) -> Result<u64, ArenaError> {
    // The array is little-endian bytes; to_le makes byte k the k-th
    // least significant on any host.
    Ok(states.load_u64(HEADER_SIZE + 8 * word as usize)?.to_le())
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = !LOW7;
const ONES: u64 = 0x0101_0101_0101_0101;

/// Bit 8k+7 set iff byte k of `word` is `value`.
fn equal_high(word: u64, value: u8) -> u64 {
    let x = word ^ (ONES * u64::from(value));
    // Per byte, bit 7 of `nonzero` is set iff the byte of x is nonzero;
    // the additions cannot carry out of a byte ((x & 0x7f) + 0x7f <= 0xfe).
    let nonzero = ((x & LOW7) + LOW7) | x;
    !nonzero & HIGH
}

/// Gathers bit 8k+7 into bit k: after the shift, bit 8k multiplied by
/// 2^(56-7k) lands on bit 56+k; every other product lands on a distinct
/// bit below 56 or at 64 and above, so nothing carries in.
fn gather(high: u64) -> u8 {
    ((high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// Bit k set iff byte k of `word` is `value`.
#[cfg(test)]
pub(crate) fn bytes_equal(word: u64, value: u8) -> u8 {
    gather(equal_high(word, value))
}

/// Bit k set iff byte k of `bytes`, the states of word `word`, is
/// `value` and page `8 * word + k` lies in `from..to`; cheap for the
/// common word with no such byte.
pub(crate) fn bytes_equal_in(bytes: u64, value: u8, word: u32, from: u32, to: u32) -> u8 {
    let high = equal_high(bytes, value);
    if high == 0 {
        return 0;
    }
    let base = word * 8;
    if from <= base && base + 8 <= to {
        gather(high)
    } else {
        gather(high) & range_mask(word, from, to)
    }
}

/// Bit 8k+7 set iff page `8 * word + k` is available (FREE or FREED).
fn available_high(word: u64) -> u64 {
    equal_high(word, FREE) | equal_high(word, FREED)
}

/// Bit k set iff page `8 * word + k` is available (FREE or FREED).
#[cfg(test)]
pub(crate) fn available_mask(word: u64) -> u8 {
    gather(available_high(word))
}

/// Bit k set iff `8 * word + k` lies in `from..to`.
pub(crate) fn range_mask(word: u32, from: u32, to: u32) -> u8 {
    let base = u64::from(word) * 8;
    let lo = u64::from(from).saturating_sub(base).min(8);
    let hi = u64::from(to).saturating_sub(base).min(8);
    let upto = |n: u64| ((1u16 << n) - 1) as u8;
    upto(hi) & !upto(lo)
}

/// What a search found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Search {
    /// The first page of the lowest run of `count` available pages.
    pub run: Option<u32>,
    /// The lowest available page seen.
    pub first_available: Option<u32>,
}

/// The lowest run of `count` (>= 1) available pages inside `from..to`
/// (`to <= npages`): one pass, a word at a time.
pub(crate) fn find_run(
    states: &impl MapMemory,
    from: u32,
    to: u32,
    count: u32,
) -> Result<Search, ArenaError> {
    let mut found = Search {
        run: None,
        first_available: None,
    };
    let (mut start, mut len) = (0u32, 0u32);
    if from >= to {
        return Ok(found);
    }
    let (first_word, last_word) = (from / 8, (to - 1) / 8);
    for word in first_word..=last_word {
        let base = word * 8;
        let bytes = load_word(states, word)?;
        let high = available_high(bytes);
        // Most words are all taken or all free: decided without gathering
        // the bits (the range only matters at the two ends).
        let edge = word == first_word || word == last_word;
        if bytes == ONES * u64::from(ALLOCATED) && !edge {
            len = 0;
            continue;
        }
        let mask = if edge {
            gather(high) & range_mask(word, from, to)
        } else if high == 0 {
            0
        } else if high == HIGH {
            0xff
        } else {
            gather(high)
        };
        if mask != 0 && found.first_available.is_none() {
            found.first_available = Some(base + mask.trailing_zeros());
        }
        match mask {
            0 => len = 0,
            0xff => {
                if len == 0 {
                    start = base;
                }
                len += 8;
            }
            _ => {
                let m = u32::from(mask);
                // The run coming in from the word below, continued by the
                // word's low pages, is the lowest candidate …
                let low = m.trailing_ones();
                if len == 0 && low > 0 {
                    start = base;
                }
                if len + low >= count {
                    found.run = Some(start);
                    return Ok(found);
                }
                // … then runs inside the word (a mixed word has at most 7
                // available pages): bit i of `inside` is set iff pages
                // i .. i + count are all available.
                if count < 8 {
                    let mut inside = m;
                    for i in 1..count {
                        inside &= m >> i;
                    }
                    if inside != 0 {
                        found.run = Some(base + inside.trailing_zeros());
                        return Ok(found);
                    }
                }
                // … and the run going out at the top carries on.
                len = (m << 24).leading_ones();
                start = base + 8 - len;
            }
        }
        if len >= count {
            found.run = Some(start);
            return Ok(found);
        }
    }
    Ok(found)
}

/// The first-fit hint, clamped to `npages` (garbage above it reads as 0,
/// which is always a correct lower bound).
pub(crate) fn cursor(states: &impl MapMemory, npages: u32) -> Result<u32, ArenaError> {
    let c = states.load_u32(CURSOR_OFF)?;
    Ok(if c > npages { 0 } else { c })
}

/// Sets the first-fit hint (under the lock).
pub(crate) fn set_cursor(states: &impl MapMemory, value: u32) -> Result<(), ArenaError> {
    states.store_u32(CURSOR_OFF, value)?;
    Ok(())
}

/// Lowers the hint to `page` if it is above (a page became available).
pub(crate) fn lower_cursor(
    states: &impl MapMemory,
    npages: u32,
    page: u32,
) -> Result<(), ArenaError> {
    if page < cursor(states, npages)? {
        set_cursor(states, page)?;
    }
    Ok(())
}

/// Adds `delta` to the counter at `off` (under the lock), saturating: the
/// counters are informative, and guest garbage in them must not matter.
pub(crate) fn add_counter(
    states: &impl MapMemory,
    off: usize,
    delta: i64,
) -> Result<(), ArenaError> {
    if delta == 0 {
        return Ok(());
    }
    let old = i64::from(states.load_u32(off)?);
    let new = (old + delta).clamp(0, i64::from(u32::MAX)) as u32;
    states.store_u32(off, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unknown_bytes_decode_as_allocated() {
        for b in 0..=255u8 {
            let s = PageState::from_byte(b);
            if b <= RELEASING {
                assert_eq!(s.byte(), b);
            } else {
                assert_eq!(s, PageState::Allocated);
            }
            assert_eq!(s.is_available(), b == FREE || b == FREED);
        }
    }

    #[test]
    fn range_masks_cover_exactly_the_range() {
        assert_eq!(range_mask(0, 0, 8), 0xff);
        assert_eq!(range_mask(0, 3, 5), 0b0001_1000);
        assert_eq!(range_mask(1, 3, 13), 0b0001_1111);
        assert_eq!(range_mask(2, 3, 13), 0);
        assert_eq!(range_mask(0, 9, 20), 0);
    }

    proptest! {
        /// find_run finds what a byte-by-byte search finds, whatever the
        /// range, length and states.
        #[test]
        fn find_run_matches_a_byte_search(
            bytes in prop::collection::vec(prop_oneof![0..5u8, any::<u8>()], 1..90),
            from in 0..100u32,
            len in 0..100u32,
            count in 1..20u32,
        ) {
            use crate::maps::StorageView;
            use std::sync::atomic::AtomicU64;
            let n = bytes.len() as u32;
            let words: Vec<AtomicU64> = (0..(HEADER_SIZE + bytes.len()).div_ceil(8))
                .map(|_| AtomicU64::new(0x0101_0101_0101_0101))
                .collect();
            let mem = StorageView::from_atomic(&words, 0);
            mem.write(HEADER_SIZE, &bytes).unwrap();
            let to = from.saturating_add(len).min(n);
            let avail = |p: u32| PageState::from_byte(bytes[p as usize]).is_available();
            let want = Search {
                run: (from..to.saturating_sub(count - 1).max(from))
                    .find(|&s| s + count <= to && (s..s + count).all(avail)),
                first_available: (from..to).find(|&p| avail(p)),
            };
            let got = find_run(&mem, from, to, count).unwrap();
            prop_assert_eq!(got.run, want.run);
            prop_assert_eq!(got.first_available, want.first_available);
        }

        /// The SWAR tests agree with a byte loop on every word.
        #[test]
        fn word_tests_match_bytes(bytes in prop::array::uniform8(prop_oneof![0..6u8, any::<u8>()]),
                                  value in 0..6u8) {
            let word = u64::from_le_bytes(bytes);
            let eq = (0..8).filter(|&k| bytes[k] == value).fold(0u8, |m, k| m | 1 << k);
            prop_assert_eq!(bytes_equal(word, value), eq);
            let avail = (0..8)
                .filter(|&k| PageState::from_byte(bytes[k]).is_available())
                .fold(0u8, |m, k| m | 1 << k);
            prop_assert_eq!(available_mask(word), avail);
        }
    }
}
