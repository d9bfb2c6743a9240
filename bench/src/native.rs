//! The compute rows in native Rust: the same algorithms over the same
//! inputs as the programs in `images/progs/bench/`, giving the same
//! checksums.
//!
//! The inputs come from [`generate`], the generator `bench.h` expands into
//! the programs' `.rodata` (a test checks both agree). Each is made once and
//! handed to the computation through [`black_box`], so the compiler can
//! neither fold the work into a constant nor hoist it out of the timed loop.

use std::hint::black_box;
use std::sync::OnceLock;

/// The inputs' generator, `BENCH_GEN(seed, i)` of `bench.h`: murmur3's
/// 32-bit finaliser over `i * golden ratio + seed`.
pub const fn generate(seed: u32, i: u32) -> u32 {
    let mut h = i.wrapping_mul(0x9e37_79b9).wrapping_add(seed);
    h = (h ^ (h >> 16)).wrapping_mul(0x85eb_ca6b);
    h = (h ^ (h >> 13)).wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// `n` generated values for `seed`.
pub fn generated(seed: u32, n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| generate(seed, i)).collect()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x100_0000_01b3;

/// `hash.bpf.c`: the bytes hashed, and how often.
pub const HASH_BYTES: usize = 4096;
const HASH_ROUNDS: usize = 4;
/// Seed of `hash_input`.
pub const HASH_SEED: u32 = 1;

/// `hash.bpf.c`: FNV-1a over the 4 KiB input, four times in a row.
pub fn hash() -> u64 {
    static INPUT: OnceLock<Vec<u8>> = OnceLock::new();
    let input = INPUT.get_or_init(|| {
        generated(HASH_SEED, HASH_BYTES)
            .into_iter()
            .map(|v| v as u8)
            .collect()
    });
    let input = black_box(input.as_slice());
    let mut h = FNV_OFFSET;
    for _ in 0..HASH_ROUNDS {
        for &byte in input {
            h = (h ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// `sort.bpf.c`: how many values are sorted.
pub const SORT_N: usize = 256;
/// Seed of `sort_input`.
pub const SORT_SEED: u32 = 2;

/// `sort.bpf.c`: the same bitonic network over a copy of the input, then
/// the sum of `(i + 1) * sorted[i]`.
pub fn sort() -> u64 {
    static INPUT: OnceLock<Vec<u32>> = OnceLock::new();
    let input = INPUT.get_or_init(|| generated(SORT_SEED, SORT_N));
    let mut buf = [0u32; SORT_N];
    buf.copy_from_slice(black_box(input.as_slice()));
    let mut k = 2;
    while k <= SORT_N {
        let mut j = k / 2;
        while j > 0 {
            for p in 0..SORT_N / 2 {
                let lo = ((p & !(j - 1)) << 1) | (p & (j - 1));
                let hi = lo | j;
                let (a, b) = (buf[lo], buf[hi]);
                let (min, max) = (a.min(b), a.max(b));
                let descending = lo & k != 0;
                (buf[lo], buf[hi]) = if descending { (max, min) } else { (min, max) };
            }
            j /= 2;
        }
        k *= 2;
    }
    buf.iter().enumerate().fold(0u64, |sum, (i, &v)| {
        sum.wrapping_add((i as u64 + 1).wrapping_mul(u64::from(v)))
    })
}

/// `sieve.bpf.c`: primes below this are found.
pub const SIEVE_N: usize = 32768;
const SIEVE_HALF: usize = SIEVE_N / 2;

/// `sieve.bpf.c`: the odd-only sieve into a byte array; `(h << 16) |
/// count`, with h FNV-1a over the array's little-endian 64-bit words.
pub fn sieve() -> u64 {
    let limit = black_box(SIEVE_N);
    let half = limit / 2;
    // One byte per odd number (byte k: 2k + 1), 1 when composite.
    let mut composite = [0u8; SIEVE_HALF];
    let mut p = 3;
    while p * p < limit {
        if composite[p / 2] == 0 {
            let mut m = p * p / 2;
            while m < half {
                composite[m] = 1;
                m += p;
            }
        }
        p += 2;
    }
    let mut h = FNV_OFFSET;
    let mut count = 0u64;
    for chunk in composite.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        count += 8 - (word.wrapping_mul(0x0101_0101_0101_0101) >> 56);
        h = (h ^ word).wrapping_mul(FNV_PRIME);
    }
    (h << 16) | count
}

/// `matmul.bpf.c`: the matrices' order.
pub const MAT_N: usize = 32;
/// Seeds of `mat_a` and `mat_b`.
pub const MAT_A_SEED: u32 = 3;
/// See [`MAT_A_SEED`].
pub const MAT_B_SEED: u32 = 4;

/// `matmul.bpf.c`: C = A B modulo 2^32, then the sum of `(32 i + j + 1) *
/// C[i][j]`.
pub fn matmul() -> u64 {
    static INPUT: OnceLock<(Vec<u32>, Vec<u32>)> = OnceLock::new();
    let (a, b) = INPUT.get_or_init(|| {
        (
            generated(MAT_A_SEED, MAT_N * MAT_N),
            generated(MAT_B_SEED, MAT_N * MAT_N),
        )
    });
    let (a, b) = black_box((a.as_slice(), b.as_slice()));
    let mut sum = 0u64;
    for i in 0..MAT_N {
        for j in 0..MAT_N {
            let c = (0..MAT_N).fold(0u32, |c, k| {
                c.wrapping_add(a[i * MAT_N + k].wrapping_mul(b[k * MAT_N + j]))
            });
            sum = sum.wrapping_add(((i * MAT_N + j + 1) as u64).wrapping_mul(u64::from(c)));
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sieve_counts_the_primes_below_32768() {
        // pi(32768) = 3512.
        assert_eq!(sieve() & 0xffff, 3512);
    }

    #[test]
    fn the_sort_checksum_is_that_of_the_sorted_input() {
        let mut sorted = generated(SORT_SEED, SORT_N);
        sorted.sort_unstable();
        let expected = sorted
            .iter()
            .enumerate()
            .fold(0u64, |sum, (i, &v)| sum + (i as u64 + 1) * u64::from(v));
        assert_eq!(sort(), expected);
    }
}
