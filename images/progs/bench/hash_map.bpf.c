// SPDX-License-Identifier: Apache-2.0
/*
 * hash_map: HASH_KEYS updates then HASH_LOOKUPS lookups in a
 * BPF_MAP_TYPE_HASH with scattered 32-bit keys (`hash_keys`). Each run
 * first writes every key (BPF_ANY: the first run creates them, later ones
 * overwrite), then looks keys up in a scattered order, adding each value
 * to the sum and the iteration number to the value in place; the first
 * step resets that, so each run does the same.
 *
 * result = the sum of the values looked up.
 */
#include "bench.h"

#define HASH_KEYS 256
#define HASH_LOOKUPS 1024
#define HASH_KEY_SEED 6
#define HASH_VALUE_SEED 7

const __u32 hash_keys[HASH_KEYS] = { BENCH_REP256(BENCH_GEN, HASH_KEY_SEED, 0) };
const __u32 hash_values[HASH_KEYS] = { BENCH_REP256(BENCH_GEN, HASH_VALUE_SEED, 0) };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * HASH_KEYS);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

__u64 result;

SEC("xdp")
int hash_map(struct xdp_md *ctx)
{
	__u64 sum = 0;

	for (__u32 k = 0; k < HASH_KEYS; k++) {
		__u32 key = hash_keys[k];
		__u64 value = hash_values[k];

		bpf_map_update_elem(&table, &key, &value, BPF_ANY);
	}
	for (__u32 i = 0; i < HASH_LOOKUPS; i++) {
		/* 97 is odd: every key, HASH_LOOKUPS / HASH_KEYS times. */
		__u32 key = hash_keys[(i * 97) & (HASH_KEYS - 1)];
		__u64 *value = bpf_map_lookup_elem(&table, &key);

		if (value) {
			sum += *value;
			*value += i;
		}
	}
	result = sum;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
