//! The host's `CLOCK_MONOTONIC` computed from the guest's TSC, for
//! `bpf_ktime_get_ns` and friends, with no VM exit.
//!
//! The host pairs one guest TSC reading with one monotonic clock reading
//! (`shm::percpu::BootInfo::{clock_tsc, clock_ns}`) and publishes the TSC
//! frequency (`tsc_khz`). The guest converts any later TSC value:
//!
//! ```text
//!   ns = clock_ns + (tsc - clock_tsc) * 1_000_000 / tsc_khz
//! ```
//!
//! Done naively in 64 bits, the product overflows after 2^64 / 10^6 cycles
//! (about 1.7 hours at 3 GHz), and a 128-bit division costs a library call
//! per reading. As the kernel's clocksources do, [`TscClock`] instead
//! multiplies by a precomputed `mult` and shifts right by `shift`, in 128
//! bits: `ns = clock_ns + (delta * mult) >> shift`. `mult` is normalised to
//! 64 significant bits, so the result is the exact quotient or one less for
//! any time below 2^63 ns (292 years), and it never goes backwards as the
//! TSC advances.

/// Nanoseconds per millisecond: the TSC frequency is in kHz, so one cycle
/// lasts `NS_PER_MS / tsc_khz` nanoseconds.
const NS_PER_MS: u128 = 1_000_000;

/// Largest shift for which `NS_PER_MS << shift` still fits in a u128
/// (10^6 < 2^20).
const MAX_SHIFT: u32 = 107;

/// Cycles → nanoseconds for one TSC frequency: `ns = (cycles * mult) >> shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    /// `floor(10^6 * 2^shift / tsc_khz)`, in `[2^63, 2^64)` unless the
    /// frequency is beyond any real TSC's; 0 when the frequency is unknown.
    pub mult: u64,
    /// Right shift applied to the 128-bit product.
    pub shift: u32,
}

impl TscScale {
    /// The scale for a TSC running at `tsc_khz` kHz. A frequency of 0
    /// (unknown) gives a scale that maps every duration to 0: time then
    /// stands still at the host's reading.
    pub const fn new(tsc_khz: u64) -> TscScale {
        if tsc_khz == 0 {
            return TscScale { mult: 0, shift: 0 };
        }
        let khz = tsc_khz as u128;
        // First at shift 64: 10^6 * 2^64 < 2^84, no overflow.
        let q = (NS_PER_MS << 64) / khz;
        let bits = 128 - q.leading_zeros();
        if bits > 64 {
            // A slow TSC (below 1 MHz): drop the low bits of the quotient;
            // the floor of a floor is the floor of the whole.
            let excess = bits - 64;
            TscScale {
                mult: (q >> excess) as u64,
                shift: 64 - excess,
            }
        } else {
            // A fast TSC: shift further so `mult` keeps 64 significant
            // bits, within what 10^6 << shift allows.
            let mut shift = 64 + (64 - bits);
            if shift > MAX_SHIFT {
                shift = MAX_SHIFT;
            }
            let mult = (NS_PER_MS << shift) / khz;
            // `mult` < 2^64: it is q scaled by 2^(shift-64) ≤ 2^(64-bits).
            TscScale {
                mult: mult as u64,
                shift,
            }
        }
    }

    /// Nanoseconds in `cycles` TSC cycles, saturating at `u64::MAX`.
    pub const fn cycles_to_ns(&self, cycles: u64) -> u64 {
        let ns = (cycles as u128 * self.mult as u128) >> self.shift;
        if ns > u64::MAX as u128 {
            u64::MAX
        } else {
            ns as u64
        }
    }
}

/// The host's monotonic clock as the guest reads it from its TSC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscClock {
    /// The guest TSC at the host's reading.
    pub base_tsc: u64,
    /// The host's `CLOCK_MONOTONIC` at `base_tsc`, nanoseconds.
    pub base_ns: u64,
    /// The TSC's frequency.
    pub scale: TscScale,
}

impl TscClock {
    /// The clock paired at (`base_tsc`, `base_ns`), running at `scale`.
    pub const fn new(base_tsc: u64, base_ns: u64, scale: TscScale) -> TscClock {
        TscClock {
            base_tsc,
            base_ns,
            scale,
        }
    }

    /// Host monotonic nanoseconds when the TSC read `tsc`.
    ///
    /// A TSC behind the pairing (another vCPU's TSC may lag a few cycles)
    /// counts backwards from `base_ns`; both directions saturate instead of
    /// wrapping, so the clock never jumps across the range.
    pub const fn ns_at(&self, tsc: u64) -> u64 {
        if tsc >= self.base_tsc {
            let ns = self.scale.cycles_to_ns(tsc - self.base_tsc);
            self.base_ns.saturating_add(ns)
        } else {
            let ns = self.scale.cycles_to_ns(self.base_tsc - tsc);
            self.base_ns.saturating_sub(ns)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `floor(cycles * 10^6 / khz)`, computed exactly.
    fn exact_ns(cycles: u64, khz: u64) -> u128 {
        cycles as u128 * NS_PER_MS / khz as u128
    }

    /// The scaled result is the exact quotient or one below it.
    fn assert_close(cycles: u64, khz: u64) {
        let scale = TscScale::new(khz);
        let got = scale.cycles_to_ns(cycles) as u128;
        let want = exact_ns(cycles, khz);
        assert!(
            got <= want && want - got <= 1,
            "{cycles} cycles at {khz} kHz: got {got}, want {want} ({scale:?})"
        );
    }

    #[test]
    fn three_ghz_converts_hours_without_overflow() {
        let khz = 3_000_000;
        // One second, one day, ten years of cycles.
        for seconds in [1u64, 86_400, 315_360_000] {
            let cycles = seconds * khz * 1000;
            let ns = TscScale::new(khz).cycles_to_ns(cycles);
            assert!(
                ns.abs_diff(seconds * 1_000_000_000) <= 1,
                "{seconds} s: {ns} ns"
            );
            assert_close(cycles, khz);
        }
    }

    #[test]
    fn mult_keeps_64_significant_bits() {
        for khz in [
            1, 999, 1_000_000, 1_000_001, 2_100_000, 3_999_999, 5_000_000,
        ] {
            let scale = TscScale::new(khz);
            assert!(scale.mult >= 1 << 63, "{khz} kHz: {scale:?}");
        }
    }

    #[test]
    fn an_unknown_frequency_stands_still() {
        let clock = TscClock::new(1_000, 5_000, TscScale::new(0));
        assert_eq!(clock.ns_at(1_000), 5_000);
        assert_eq!(clock.ns_at(u64::MAX), 5_000);
        assert_eq!(clock.ns_at(0), 5_000);
    }

    #[test]
    fn clock_counts_from_the_pairing_in_both_directions() {
        // A 2 GHz TSC: two cycles per nanosecond.
        let clock = TscClock::new(10_000, 1_000_000, TscScale::new(2_000_000));
        assert_eq!(clock.ns_at(10_000), 1_000_000);
        assert_eq!(clock.ns_at(12_000), 1_001_000);
        assert_eq!(clock.ns_at(8_000), 999_000);
    }

    #[test]
    fn clock_saturates_instead_of_wrapping() {
        let slow = TscScale::new(1);
        let clock = TscClock::new(0, u64::MAX - 10, slow);
        assert_eq!(clock.ns_at(u64::MAX), u64::MAX);
        let clock = TscClock::new(u64::MAX, 10, slow);
        assert_eq!(clock.ns_at(0), 0);
        assert_eq!(slow.cycles_to_ns(u64::MAX), u64::MAX);
    }

    proptest! {
        #[test]
        fn scaled_time_is_exact_within_one_ns(
            khz in 1u64..20_000_000,
            cycles in any::<u64>(),
        ) {
            prop_assume!(exact_ns(cycles, khz) < 1 << 63);
            assert_close(cycles, khz);
        }

        #[test]
        fn huge_frequencies_do_not_overflow(khz in any::<u64>(), cycles in any::<u64>()) {
            let scale = TscScale::new(khz);
            let got = u128::from(scale.cycles_to_ns(cycles));
            prop_assert!(got <= exact_ns(cycles, khz.max(1)));
        }

        #[test]
        fn time_never_goes_backwards(
            khz in 1u64..20_000_000,
            base_tsc in any::<u64>(),
            base_ns in any::<u64>(),
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let clock = TscClock::new(base_tsc, base_ns, TscScale::new(khz));
            let (early, late) = (a.min(b), a.max(b));
            prop_assert!(clock.ns_at(early) <= clock.ns_at(late));
        }
    }
}
