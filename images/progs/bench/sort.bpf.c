// SPDX-License-Identifier: Apache-2.0
/*
 * sort: a bitonic sort of 256 u32 values, copied from .rodata into a .bss
 * scratch array on each run. The network is the same whatever the data:
 * 4608 compare-exchanges, each branch-free (min and max from the sign of a
 * 64-bit difference, the direction as a mask), so the kernel's verifier
 * walks it once and no engine pays for mispredicted branches.
 *
 * result = sum over i of (i + 1) * sorted[i], as a u64.
 */
#include "bench.h"

#define SORT_N 256
#define SORT_SEED 2

const __u32 sort_input[SORT_N] = { BENCH_REP256(BENCH_GEN, SORT_SEED, 0) };

__u32 sort_buf[SORT_N];
__u64 result;

/* An all-ones mask when x != 0 (x below 2^63), else 0. */
static __always_inline __u64 nonzero_mask(__u64 x)
{
	__u64 negated = 0 - x;

	/* Keep clang from turning this into a select (see below). */
	asm volatile("" : "+r"(negated));
	return 0 - (negated >> 63);
}

/*
 * Orders sort_buf[lo] and sort_buf[hi] ascending, or descending when
 * `desc` is all ones.
 */
static __always_inline void compare_exchange(__u32 lo, __u32 hi, __u64 desc)
{
	__u64 a = sort_buf[lo & (SORT_N - 1)];
	__u64 b = sort_buf[hi & (SORT_N - 1)];
	__u64 diff = a - b;
	/* All ones when a < b: both are below 2^32. */
	__u64 less = (__u64)((__s64)diff >> 63);
	__u64 min = b + (diff & less);
	__u64 max = a - (diff & less);
	__u64 flip;

	/* Keep clang from seeing a select, which BPF can only branch for. */
	asm volatile("" : "+r"(less));
	flip = (min ^ max) & desc;
	sort_buf[lo & (SORT_N - 1)] = min ^ flip;
	sort_buf[hi & (SORT_N - 1)] = max ^ flip;
}

SEC("xdp")
int sort(struct xdp_md *ctx)
{
	__u64 sum = 0;

	for (__u32 i = 0; i < SORT_N; i++)
		sort_buf[i] = ((const volatile __u32 *)sort_input)[i];
	/* k: size of the bitonic runs being merged; j: compare distance. */
	for (__u32 k = 2; k <= SORT_N; k <<= 1) {
		for (__u32 j = k >> 1; j > 0; j >>= 1) {
			for (__u32 p = 0; p < SORT_N / 2; p++) {
				/* The p-th pair: p with a 0 bit inserted at j's bit. */
				__u32 lo = ((p & ~(j - 1)) << 1) | (p & (j - 1));

				compare_exchange(lo, lo | j, nonzero_mask(lo & k));
			}
		}
	}
	for (__u32 i = 0; i < SORT_N; i++)
		sum += (__u64)(i + 1) * sort_buf[i];
	result = sum;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
