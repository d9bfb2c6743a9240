// SPDX-License-Identifier: Apache-2.0
/*
 * bpf_for_each_map_elem over an ARRAY and a HASH.
 *
 * for_each_sums: takes no input; fills a struct sums. Sets squares[i] =
 * i * i for i in 0..8 and scores[k] = 100 * k for k in 1..=5, then:
 *   - sums every element of `squares`: array_sum = 140, array_visited = 8
 *     (what the helper returns: elements visited);
 *   - sums `squares` with a callback that stops after key 3 (returns 1):
 *     prefix_sum = 0 + 1 + 4 + 9 = 14, prefix_visited = 4;
 *   - sums every element of `scores`, and their keys: hash_sum = 1500,
 *     hash_keys = 15, hash_visited = 5.
 * Returns array_sum + prefix_sum + hash_sum = 1654.
 */
#include "bpfvisor.h"

struct sums {
	__u64 array_sum;
	__u64 prefix_sum;
	__u64 hash_sum;
	__u64 hash_keys;
	__s64 array_visited;
	__s64 prefix_visited;
	__s64 hash_visited;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} squares SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} scores SEC(".maps");

struct acc {
	__u64 sum;
	__u64 keys;
	__u32 stop_after;	/* stop after this key (~0: never) */
};

static long add(void *map, __u32 *key, __u64 *value, struct acc *acc)
{
	acc->sum += *value;
	acc->keys += *key;
	return *key == acc->stop_after;
}

SEC("syscall")
int for_each_sums(struct sums *s)
{
	struct acc acc = { .stop_after = ~0U };

	/* The keys are copies: a loop counter whose address a helper takes
	 * lives on the stack, where the kernel's verifier loses its bounds
	 * ("infinite loop detected"). */
	for (__u32 i = 0; i < 8; i++) {
		__u32 key = i;
		__u64 v = i * i;

		bpf_map_update_elem(&squares, &key, &v, BPF_ANY);
	}
	for (__u32 k = 1; k <= 5; k++) {
		__u32 key = k;
		__u64 v = 100 * k;

		bpf_map_update_elem(&scores, &key, &v, BPF_ANY);
	}
	s->array_visited = bpf_for_each_map_elem(&squares, add, &acc, 0);
	s->array_sum = acc.sum;
	acc = (struct acc){ .stop_after = 3 };
	s->prefix_visited = bpf_for_each_map_elem(&squares, add, &acc, 0);
	s->prefix_sum = acc.sum;
	acc = (struct acc){ .stop_after = ~0U };
	s->hash_visited = bpf_for_each_map_elem(&scores, add, &acc, 0);
	s->hash_sum = acc.sum;
	s->hash_keys = acc.keys;
	return s->array_sum + s->prefix_sum + s->hash_sum;
}

char LICENSE[] SEC("license") = "GPL";
