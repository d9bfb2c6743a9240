// SPDX-License-Identifier: Apache-2.0
/*
 * A map larger than a sandbox's default maps region (16 MiB): an ARRAY
 * of 4 Mi __u64 (32 MiB of storage). `bpfvisor run` sizes the region for
 * the object's maps, so it loads.
 *
 * big_store: the context is a struct big_args; stores `value` at `index`
 * and returns what is now there: `value`, or -1 when `index` is out of
 * range (at least 4 Mi). On a new sandbox, {index 4194303, value 42}
 * returns 42; then big_load {index 4194303} returns 42 and {index 0}
 * returns 0.
 */
#include "bpfvisor.h"

#define BIG_ENTRIES (4 << 20)

struct big_args {
	__u32 index;
	__u32 pad;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BIG_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} big SEC(".maps");

SEC("syscall")
int big_store(struct big_args *a)
{
	__u64 *v = bpf_map_lookup_elem(&big, &a->index);

	if (!v)
		return -1;
	*v = a->value;
	return *v;
}

SEC("syscall")
int big_load(struct big_args *a)
{
	__u64 *v = bpf_map_lookup_elem(&big, &a->index);

	return v ? *v : -1;
}

char LICENSE[] SEC("license") = "GPL";
