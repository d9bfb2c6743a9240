//! Bounded loops: `bpf_loop`'s argument rules and the numeric iterator
//! behind `bpf_for` / `bpf_repeat` (kfuncs `bpf_iter_num_new`, `_next`,
//! `_destroy`), with the kernel's semantics (kernel/bpf/bpf_iter.c,
//! kernel/bpf/helpers.c).

use crate::errno::{E2BIG, EINVAL};

/// Most iterations one `bpf_loop` call or one numeric iterator may make
/// (the kernel's `BPF_MAX_LOOPS`).
pub const BPF_MAX_LOOPS: u32 = 8 * 1024 * 1024;

/// `bpf_loop(nr_loops, callback, ctx, flags)`'s checks: the number of
/// iterations to make, or the errno to return. The kernel's helper takes
/// `nr_loops` as a u32 (`BPF_CALL_4` truncates r1); any flag is -EINVAL,
/// more than [`BPF_MAX_LOOPS`] iterations -E2BIG.
pub const fn loop_count(nr_loops: u64, flags: u64) -> Result<u32, i64> {
    let nr_loops = nr_loops as u32;
    if flags != 0 {
        Err(EINVAL)
    } else if nr_loops > BPF_MAX_LOOPS {
        Err(E2BIG)
    } else {
        Ok(nr_loops)
    }
}

/// `struct bpf_iter_num` as the kernel uses its 8 opaque bytes
/// (`struct bpf_iter_num_kern`): the current value and the exclusive end.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IterNum {
    /// The value `next` last produced (`start - 1` before the first call).
    pub cur: i32,
    /// The first value not produced.
    pub end: i32,
}

/// Size of `struct bpf_iter_num` in the program's memory.
pub const ITER_NUM_SIZE: usize = core::mem::size_of::<IterNum>();

const _: () = assert!(ITER_NUM_SIZE == 8);

impl IterNum {
    /// `bpf_iter_num_new(it, start, end)`: the iterator over
    /// `start..end` and the kfunc's return value. `start > end` is
    /// -EINVAL, a range of more than [`BPF_MAX_LOOPS`] values -E2BIG; both
    /// leave an iterator that is already done. `start == end` is a valid,
    /// empty range.
    pub const fn new(start: i32, end: i32) -> (IterNum, i64) {
        if start > end {
            return (IterNum { cur: 0, end: 0 }, EINVAL);
        }
        // In 64 bits: INT_MIN..INT_MAX must not overflow.
        if end as i64 - start as i64 > BPF_MAX_LOOPS as i64 {
            return (IterNum { cur: 0, end: 0 }, E2BIG);
        }
        // `next` increments first; start == INT_MIN wraps here and back.
        let cur = start.wrapping_sub(1);
        (IterNum { cur, end }, 0)
    }

    /// `bpf_iter_num_next(it)`: advances and returns true when `cur` holds
    /// the next value (the kfunc then returns a pointer to it), false when
    /// the range is done (it returns NULL, and the iterator stays done).
    pub const fn next(&mut self) -> bool {
        // The kernel computes `cur + 1` in (wrapping) int, then widens.
        if self.cur.wrapping_add(1) as i64 >= self.end as i64 {
            self.cur = 0;
            self.end = 0;
            return false;
        }
        self.cur = self.cur.wrapping_add(1);
        true
    }

    /// `bpf_iter_num_destroy(it)`: a destroyed iterator is done.
    pub const fn destroyed() -> IterNum {
        IterNum { cur: 0, end: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every value `it` produces, at most `limit` of them.
    fn drain(mut it: IterNum, limit: usize) -> Vec<i32> {
        let mut values = Vec::new();
        while values.len() < limit && it.next() {
            values.push(it.cur);
        }
        values
    }

    #[test]
    fn loop_count_has_the_kernel_limits() {
        assert_eq!(loop_count(0, 0), Ok(0));
        assert_eq!(loop_count(u64::from(BPF_MAX_LOOPS), 0), Ok(BPF_MAX_LOOPS));
        assert_eq!(loop_count(u64::from(BPF_MAX_LOOPS) + 1, 0), Err(E2BIG));
        assert_eq!(loop_count(10, 1), Err(EINVAL));
        // r1 is truncated to 32 bits, as BPF_CALL_4 does.
        assert_eq!(loop_count((1 << 32) | 5, 0), Ok(5));
        assert_eq!(loop_count(u64::MAX, 0), Err(E2BIG));
    }

    #[test]
    fn iterator_produces_start_to_end_exclusive() {
        let (it, ret) = IterNum::new(3, 7);
        assert_eq!(ret, 0);
        assert_eq!(drain(it, 100), [3, 4, 5, 6]);
    }

    #[test]
    fn empty_and_refused_ranges_produce_nothing() {
        assert_eq!(IterNum::new(5, 5), (IterNum { cur: 4, end: 5 }, 0));
        assert_eq!(drain(IterNum::new(5, 5).0, 10), []);
        assert_eq!(IterNum::new(6, 5), (IterNum::default(), EINVAL));
        let too_many = BPF_MAX_LOOPS as i32 + 1;
        assert_eq!(IterNum::new(0, too_many), (IterNum::default(), E2BIG));
        assert_eq!(
            IterNum::new(i32::MIN, i32::MAX),
            (IterNum::default(), E2BIG)
        );
        assert_eq!(drain(IterNum::new(i32::MIN, i32::MAX).0, 10), []);
    }

    #[test]
    fn iterator_handles_the_ends_of_the_int_range() {
        let (it, ret) = IterNum::new(i32::MIN, i32::MIN + 3);
        assert_eq!(ret, 0);
        assert_eq!(drain(it, 10), [i32::MIN, i32::MIN + 1, i32::MIN + 2]);
        let (it, _) = IterNum::new(i32::MAX - 2, i32::MAX);
        assert_eq!(drain(it, 10), [i32::MAX - 2, i32::MAX - 1]);
    }

    #[test]
    fn a_done_iterator_stays_done() {
        let (mut it, _) = IterNum::new(0, 1);
        assert!(it.next());
        assert!(!it.next());
        assert_eq!(it, IterNum::default());
        assert!(!it.next());
        let mut it = IterNum::destroyed();
        assert!(!it.next());
    }

    #[test]
    fn the_full_range_is_allowed() {
        let (it, ret) = IterNum::new(-1, BPF_MAX_LOOPS as i32 - 1);
        assert_eq!(ret, 0);
        let mut it = it;
        let mut n = 0u32;
        while it.next() {
            n += 1;
        }
        assert_eq!(n, BPF_MAX_LOOPS);
    }

    proptest! {
        #[test]
        fn iterator_matches_a_range(start in any::<i32>(), len in 0i64..2000) {
            let end = (i64::from(start) + len).min(i64::from(i32::MAX)) as i32;
            let (it, ret) = IterNum::new(start, end);
            prop_assert_eq!(ret, 0);
            prop_assert_eq!(drain(it, 3000), (start..end).collect::<Vec<_>>());
        }

        #[test]
        fn any_bytes_iterate_from_cur_plus_one_to_end(cur in any::<i32>(), ahead in -100i32..3000) {
            // A program may scribble on its iterator: next() then runs from
            // cur + 1 (wrapping, as the kernel's int arithmetic) up to end.
            let first = cur.wrapping_add(1);
            let end = first.saturating_add(ahead);
            let mut it = IterNum { cur, end };
            let mut values = Vec::new();
            while it.next() {
                values.push(it.cur);
                prop_assert!(values.len() <= 3000);
            }
            prop_assert_eq!(values, (first..end).collect::<Vec<_>>());
        }
    }
}
