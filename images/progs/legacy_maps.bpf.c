// SPDX-License-Identifier: Apache-2.0
/*
 * Maps defined the old way: struct bpf_map_def in SEC("maps"), which
 * libbpf 1.0 dropped (so the struct is declared here) and bpfvisor still
 * reads.
 *
 * legacy_add: the context is a struct add_args; adds `add` to the HASH
 * element `key` (created at 0) and counts the call in the ARRAY element 0.
 * Returns the element's new value. On a new sandbox, {key 5, add 3} then
 * {key 5, add 4} return 3 then 7; `calls` then holds 2.
 * legacy_calls: returns calls[0].
 */
#include "bpfvisor.h"

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") totals = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 32,
	.map_flags = BPF_F_NO_PREALLOC,
};

struct bpf_map_def SEC("maps") calls = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 1,
};

struct add_args {
	__u32 key;
	__u32 add;
};

SEC("syscall")
int legacy_add(struct add_args *a)
{
	__u32 zero = 0;
	__u64 *calls_v = bpf_map_lookup_elem(&calls, &zero);
	__u64 *v = bpf_map_lookup_elem(&totals, &a->key);
	__u64 sum = a->add;

	if (calls_v)
		__sync_fetch_and_add(calls_v, 1);
	if (v) {
		sum = __sync_add_and_fetch(v, a->add);
	} else if (bpf_map_update_elem(&totals, &a->key, &sum, BPF_NOEXIST)) {
		return -1;
	}
	return sum;
}

SEC("syscall")
int legacy_calls(void *ctx)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&calls, &zero);

	return v ? *v : -1;
}

char LICENSE[] SEC("license") = "GPL";
