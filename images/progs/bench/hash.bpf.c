// SPDX-License-Identifier: Apache-2.0
/*
 * hash: FNV-1a (64-bit) over a 4 KiB buffer, hashed HASH_ROUNDS times in a
 * row (as if over the buffer repeated), one byte at a time: a chain of
 * dependent multiplies, the cost of byte-wise hashing.
 *
 * result = the hash; bench/src/native.rs computes the same.
 */
#include "bench.h"

#define HASH_BYTES 4096
#define HASH_ROUNDS 4
#define HASH_SEED 1

const __u8 hash_input[HASH_BYTES] = { BENCH_REP4096(BENCH_BYTE, HASH_SEED, 0) };

__u64 result;

SEC("xdp")
int hash(struct xdp_md *ctx)
{
	__u64 h = FNV_OFFSET;

	for (__u32 round = 0; round < HASH_ROUNDS; round++) {
		for (__u32 i = 0; i < HASH_BYTES; i++) {
			h ^= hash_input[i];
			h *= FNV_PRIME;
		}
	}
	result = h;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
