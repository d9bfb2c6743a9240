// SPDX-License-Identifier: Apache-2.0
/*
 * sieve: the primes below 32768 by the sieve of Eratosthenes over odd
 * numbers only (byte k stands for 2k + 1), in a 16 KiB .bss array cleared
 * on each run. Counting reads the array eight bytes at a time.
 *
 * result = (h << 16) | count, where count is the number of primes below
 * SIEVE_N (3512: byte 0, the number 1, stands in for 2) and h is FNV-1a
 * over the array's 64-bit words, so the whole array is checked.
 */
#include "bench.h"

#define SIEVE_N 32768
#define SIEVE_HALF (SIEVE_N / 2)
#define SIEVE_WORDS (SIEVE_HALF / 8)

/* One byte per odd number, 1 when composite. */
union {
	__u8 byte[SIEVE_HALF];
	__u64 word[SIEVE_WORDS];
} sieve_buf;

__u64 result;

SEC("xdp")
int sieve(struct xdp_md *ctx)
{
	__u64 h = FNV_OFFSET;
	__u64 count = 0;

	/* volatile: clang would make this loop a memset, which BPF lacks. */
	for (__u32 w = 0; w < SIEVE_WORDS; w++)
		((volatile __u64 *)sieve_buf.word)[w] = 0;
	for (__u32 p = 3; p * p < SIEVE_N; p += 2) {
		if (sieve_buf.byte[(p >> 1) & (SIEVE_HALF - 1)])
			continue;
		for (__u32 m = (p * p) >> 1; m < SIEVE_HALF; m += p)
			sieve_buf.byte[m & (SIEVE_HALF - 1)] = 1;
	}
	for (__u32 w = 0; w < SIEVE_WORDS; w++) {
		__u64 word = sieve_buf.word[w];

		/* Bytes are 0 or 1: the multiply sums them into the top byte. */
		count += 8 - ((word * 0x0101010101010101ull) >> 56);
		h = (h ^ word) * FNV_PRIME;
	}
	result = (h << 16) | count;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
