// SPDX-License-Identifier: Apache-2.0
/*
 * percpu_counter: COUNTER_ADDS additions to PERCPU_COUNTERS counters of a
 * BPF_MAP_TYPE_PERCPU_ARRAY, each through its own lookup, as a program
 * counting events per CPU does. Each run first zeroes this CPU's counters,
 * so each run does the same (a run stays on one CPU).
 *
 * result = sum over k of (k + 1) * counter[k], this CPU's counters.
 */
#include "bench.h"

#define PERCPU_COUNTERS 16
#define COUNTER_ADDS 4096
#define COUNTER_INPUTS 256
#define COUNTER_SEED 8

const __u32 counter_input[COUNTER_INPUTS] = { BENCH_REP256(BENCH_GEN, COUNTER_SEED, 0) };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PERCPU_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

__u64 result;

SEC("xdp")
int percpu_counter(struct xdp_md *ctx)
{
	__u64 sum = 0;

	for (__u32 k = 0; k < PERCPU_COUNTERS; k++) {
		/* A copy: the verifier forgets what a helper was pointed at. */
		__u32 key = k;
		__u64 *counter = bpf_map_lookup_elem(&counters, &key);

		if (counter)
			*counter = 0;
	}
	for (__u32 i = 0; i < COUNTER_ADDS; i++) {
		__u32 key = i & (PERCPU_COUNTERS - 1);
		__u64 *counter = bpf_map_lookup_elem(&counters, &key);

		if (counter)
			*counter += counter_input[i & (COUNTER_INPUTS - 1)];
	}
	for (__u32 k = 0; k < PERCPU_COUNTERS; k++) {
		__u32 key = k;
		__u64 *counter = bpf_map_lookup_elem(&counters, &key);

		if (counter)
			sum += (__u64)(k + 1) * *counter;
	}
	result = sum;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
