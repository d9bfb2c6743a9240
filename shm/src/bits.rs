//! The bit iterator behind CPU-mask loops (kfuncs `bpf_iter_bits_new`,
//! `_next`, `_destroy`), with the kernel's layout and semantics
//! (kernel/bpf/helpers.c, Linux 6.11). The kernel has no CPU-mask iterator
//! of its own: its proposal became this generic one over `u64` words, and
//! a CPU mask is one word here (at most [`crate::layout::MAX_CPUS`] vCPUs).

use crate::errno::{E2BIG, EINVAL};

/// Most words one iterator may cover (the kernel's
/// `BITS_ITER_NR_WORDS_MAX`).
pub const BITS_ITER_NR_WORDS_MAX: u32 = 511;

/// `struct bpf_iter_bits` as the kernel uses its 16 opaque bytes
/// (`struct bpf_iter_bits_kern`).
///
/// The kernel copies a one-word mask into `bits` and a longer one into
/// memory it allocates. The guest runtime has no allocator: for longer
/// masks `bits` keeps the program's pointer and `next` reads the words
/// there, fault-safe, as it goes (so a mask the program changes while it
/// iterates is seen changed; the kernel iterates a snapshot).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IterBits {
    /// The mask itself when it is one word, else the address of its words.
    pub bits: u64,
    /// Number of bits covered (64 × words); 0 once destroyed or refused.
    pub nr_bits: i32,
    /// The bit `next` last produced (-1 before the first call); `next`
    /// returns a pointer to this field.
    pub bit: i32,
}

/// Size of `struct bpf_iter_bits` in the program's memory.
pub const ITER_BITS_SIZE: usize = core::mem::size_of::<IterBits>();
/// Offset of [`IterBits::bit`], the `int` that `next` points at.
pub const ITER_BITS_BIT_OFFSET: usize = core::mem::offset_of!(IterBits, bit);

const _: () = assert!(ITER_BITS_SIZE == 16 && ITER_BITS_BIT_OFFSET == 12);

/// Why an iterator could not start, as the kfunc's errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitsRefusal {
    /// A NULL mask or zero words: -EINVAL.
    Invalid,
    /// More than [`BITS_ITER_NR_WORDS_MAX`] words: -E2BIG.
    TooBig,
}

impl BitsRefusal {
    /// The kfunc's return value.
    pub const fn errno(self) -> i64 {
        match self {
            BitsRefusal::Invalid => EINVAL,
            BitsRefusal::TooBig => E2BIG,
        }
    }
}

impl IterBits {
    /// The iterator the kernel leaves when `new` fails, and after `destroy`:
    /// `next` gives nothing.
    pub const fn done() -> IterBits {
        IterBits {
            bits: 0,
            nr_bits: 0,
            bit: -1,
        }
    }

    /// `bpf_iter_bits_new(it, ptr, nr_words)`'s checks; on success the
    /// number of bits to cover. The caller then stores the one word, or
    /// `ptr`, in [`IterBits::bits`] (a word that cannot be read is -EFAULT).
    pub const fn check(ptr: u64, nr_words: u32) -> Result<i32, BitsRefusal> {
        if ptr == 0 || nr_words == 0 {
            return Err(BitsRefusal::Invalid);
        }
        if nr_words > BITS_ITER_NR_WORDS_MAX {
            return Err(BitsRefusal::TooBig);
        }
        // At most 511 × 64 bits: fits an i32.
        Ok((nr_words * 64) as i32)
    }

    /// Whether the mask is the one word in [`IterBits::bits`].
    pub const fn is_inline(&self) -> bool {
        self.nr_bits == 64
    }

    /// `bpf_iter_bits_next`: advances to the next set bit and returns it,
    /// or `None` when none is left. `word(i)` reads word `i` of the mask
    /// (it is not called for an inline mask); `None` (a fault) ends the
    /// iteration. The fields live in program memory and may hold anything:
    /// `nr_bits` is bounded by [`BITS_ITER_NR_WORDS_MAX`] words, so one call
    /// reads at most that many words.
    pub fn advance(&mut self, mut word: impl FnMut(u32) -> Option<u64>) -> Option<i32> {
        let max_bits = (BITS_ITER_NR_WORDS_MAX * 64) as i32;
        let nr_bits = self.nr_bits.clamp(0, max_bits);
        if nr_bits == 0 || self.bit >= nr_bits {
            return None;
        }
        // The first candidate; `bit` below -1 (a scribbled iterator) starts
        // from 0.
        let mut next = self.bit.saturating_add(1).max(0);
        while next < nr_bits {
            let index = (next / 64) as u32;
            let value = if self.is_inline() {
                Some(self.bits)
            } else {
                word(index)
            };
            let Some(value) = value else {
                break;
            };
            let pending = value >> (next % 64);
            if pending != 0 {
                let found = next + pending.trailing_zeros() as i32;
                self.bit = found;
                return Some(found);
            }
            next = (index as i32 + 1) * 64;
        }
        self.bit = nr_bits;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(mut iter: IterBits, words: &[u64]) -> Vec<i32> {
        let mut out = Vec::new();
        while let Some(bit) = iter.advance(|i| words.get(i as usize).copied()) {
            out.push(bit);
        }
        // Done stays done.
        assert_eq!(iter.advance(|i| words.get(i as usize).copied()), None);
        out
    }

    fn started(words: &[u64]) -> IterBits {
        let nr_bits = IterBits::check(0x1000, words.len() as u32).unwrap();
        let bits = if words.len() == 1 { words[0] } else { 0x1000 };
        IterBits {
            bits,
            nr_bits,
            bit: -1,
        }
    }

    #[test]
    fn one_word_gives_set_bits_in_order() {
        let mask = (1 << 0) | (1 << 3) | (1 << 63);
        assert_eq!(collect(started(&[mask]), &[]), [0, 3, 63]);
        assert_eq!(collect(started(&[0]), &[]), Vec::<i32>::new());
        assert_eq!(collect(started(&[u64::MAX]), &[]).len(), 64);
    }

    #[test]
    fn several_words_are_read_as_needed() {
        let words = [1 << 5, 0, 1 | (1 << 62)];
        assert_eq!(collect(started(&words), &words), [5, 128, 190]);
    }

    #[test]
    fn a_word_that_faults_ends_the_iteration() {
        let words = [1 << 1];
        let iter = IterBits {
            bits: 0x1000,
            nr_bits: 128,
            bit: -1,
        };
        // Word 1 cannot be read.
        assert_eq!(collect(iter, &words), [1]);
    }

    #[test]
    fn refusals_are_the_kernels_errnos() {
        assert_eq!(IterBits::check(0, 1).unwrap_err().errno(), -22);
        assert_eq!(IterBits::check(8, 0).unwrap_err().errno(), -22);
        assert_eq!(IterBits::check(8, 512).unwrap_err().errno(), -7);
        assert_eq!(IterBits::check(8, 511), Ok(511 * 64));
        assert_eq!(collect(IterBits::done(), &[]), Vec::<i32>::new());
    }

    #[test]
    fn scribbled_fields_stay_bounded() {
        let mut calls = 0;
        let mut iter = IterBits {
            bits: 0x1000,
            nr_bits: i32::MAX,
            bit: i32::MIN,
        };
        assert_eq!(
            iter.advance(|_| {
                calls += 1;
                Some(0)
            }),
            None
        );
        assert_eq!(calls, BITS_ITER_NR_WORDS_MAX);
        let mut iter = IterBits {
            bits: 1,
            nr_bits: -5,
            bit: -1,
        };
        assert_eq!(iter.advance(|_| Some(1)), None);
    }
}
