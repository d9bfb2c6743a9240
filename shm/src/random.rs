//! `bpf_get_prandom_u32`'s generator: xorshift64* over the vCPU's 8-byte
//! `shm::percpu::PerCpu::prng_state`.
//!
//! The kernel draws from a per-CPU `struct rnd_state` with
//! `prandom_u32_state`, a combined Tausworthe generator (L'Ecuyer's LFSR113)
//! over 16 bytes of state. A program cannot tell which generator it gets,
//! only that the numbers look random and that each CPU has its own stream;
//! the per-CPU block holds one u64 of state, so this uses Vigna's xorshift64*
//! ("An experimental exploration of Marsaglia's xorshift generators,
//! scrambled", 2016): period 2^64 - 1, and its upper 32 output bits — what
//! this returns — pass BigCrush. Like the kernel's, it is not a
//! cryptographic generator.
//!
//! The state must never be 0 (xorshift would stay at 0 forever). The host
//! seeds it non-zero; since a program can overwrite its per-CPU block, a
//! state of 0 is replaced by [`ZERO_STATE_REPLACEMENT`] rather than trusted.

/// The multiplier of xorshift64* (Vigna, table of M32 multipliers).
const MULTIPLIER: u64 = 0x2545_f491_4f6c_dd1d;

/// What a state of 0 (which xorshift cannot leave) is replaced with: the
/// 64-bit golden ratio, as SplitMix64 uses to spread its seeds.
pub const ZERO_STATE_REPLACEMENT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Advances `state` one step and returns the next 32-bit output.
pub fn next_u32(state: &mut u64) -> u32 {
    let mut x = if *state == 0 {
        ZERO_STATE_REPLACEMENT
    } else {
        *state
    };
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(MULTIPLIER) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_outputs_match_the_reference_generator() {
        // Vigna's xorshift64star.c with x = 1, upper 32 bits of each output,
        // computed independently with Python integer arithmetic.
        let mut state = 1;
        let got: Vec<u32> = (0..4).map(|_| next_u32(&mut state)).collect();
        assert_eq!(got, [0x47e4_ce4b, 0xabcf_a6a8, 0xb9d1_0d8f, 0x4db4_18a0]);
    }

    #[test]
    fn a_zero_state_is_replaced_not_kept() {
        let mut state = 0;
        let first = next_u32(&mut state);
        assert_ne!(state, 0);
        let mut replaced = ZERO_STATE_REPLACEMENT;
        assert_eq!(next_u32(&mut replaced), first);
        assert_eq!(state, replaced);
    }

    #[test]
    fn outputs_spread_over_all_bits() {
        // 64k outputs: every bit is set about half the time, and a 16-way
        // histogram of the top bits is flat within a few percent.
        let mut state = 0x1234_5678_9abc_def0;
        let n = 1 << 16;
        let mut ones = [0u32; 32];
        let mut buckets = [0u32; 16];
        for _ in 0..n {
            let x = next_u32(&mut state);
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += (x >> bit) & 1;
            }
            buckets[(x >> 28) as usize] += 1;
        }
        for (bit, &count) in ones.iter().enumerate() {
            assert!(
                (count as f64 / n as f64 - 0.5).abs() < 0.02,
                "bit {bit}: {count}"
            );
        }
        for (bucket, &count) in buckets.iter().enumerate() {
            let expected = n as f64 / 16.0;
            assert!(
                (count as f64 - expected).abs() < expected * 0.06,
                "bucket {bucket}: {count}"
            );
        }
    }

    proptest! {
        #[test]
        fn a_non_zero_state_stays_non_zero(seed in 1u64..) {
            let mut state = seed;
            for _ in 0..64 {
                next_u32(&mut state);
                prop_assert_ne!(state, 0);
            }
        }
    }
}
