// SPDX-License-Identifier: Apache-2.0
/*
 * array_map: ARRAY_KEYS updates then ARRAY_LOOKUPS lookups in a
 * BPF_MAP_TYPE_ARRAY. Each run first writes every key's value from
 * `array_input` (bpf_map_update_elem), then looks keys up in a scattered
 * order, adding each value to the sum and the iteration number to the
 * value in place, so later lookups see earlier writes; the first step
 * resets that, so each run does the same.
 *
 * result = the sum of the values looked up.
 */
#include "bench.h"

#define ARRAY_KEYS 256
#define ARRAY_LOOKUPS 4096
#define ARRAY_SEED 5

const __u32 array_input[ARRAY_KEYS] = { BENCH_REP256(BENCH_GEN, ARRAY_SEED, 0) };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ARRAY_KEYS);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

__u64 result;

SEC("xdp")
int array_map(struct xdp_md *ctx)
{
	__u64 sum = 0;

	for (__u32 k = 0; k < ARRAY_KEYS; k++) {
		/* A copy: the verifier forgets what a helper was pointed at. */
		__u32 key = k;
		__u64 value = array_input[k];

		bpf_map_update_elem(&values, &key, &value, BPF_ANY);
	}
	for (__u32 i = 0; i < ARRAY_LOOKUPS; i++) {
		/* 97 is odd: every key, ARRAY_LOOKUPS / ARRAY_KEYS times. */
		__u32 key = (i * 97) & (ARRAY_KEYS - 1);
		__u64 *value = bpf_map_lookup_elem(&values, &key);

		if (value) {
			sum += *value;
			*value += i;
		}
	}
	result = sum;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
