// SPDX-License-Identifier: Apache-2.0
/*
 * Maps of maps: an ARRAY_OF_MAPS and a HASH_OF_MAPS whose slots are filled
 * from the object (`.values`) with two inner ARRAYs of 4 __u64.
 *
 *   by_index[0] = first, by_index[1] = second
 *   by_id[7] = second, by_id[9] = first        (keys of the hash)
 *
 * store_by_index: the context is a struct mim_args; stores `value` at
 * `key` of the inner map at `by_index[outer]`, puts what was there in
 * `old`. Returns 0, -1 when `outer` has no map, -2 when `key` is out of
 * range.
 * load_by_id: returns, and puts in `value`, the element `key` of the inner
 * map at `by_id[outer]`; -1 / -2 as above.
 * load_second: returns element `key` of `second`, read directly.
 *
 * On a new sandbox, store_by_index {outer 1, key 2, value 42} then
 * load_by_id {outer 7, key 2} and load_second {key 2} both return 42;
 * load_by_id {outer 9, key 2} returns 0, {outer 8} returns -1.
 */
#include "bpfvisor.h"

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner first SEC(".maps"), second SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} by_index SEC(".maps") = {
	.values = { &first, &second },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, struct inner);
} by_id SEC(".maps") = {
	.values = { [7] = &second, [9] = &first },
};

struct mim_args {
	__u32 outer;
	__u32 key;
	__u64 value;
	__u64 old;
};

SEC("syscall")
int store_by_index(struct mim_args *a)
{
	void *inner = bpf_map_lookup_elem(&by_index, &a->outer);
	__u64 *v;

	if (!inner)
		return -1;
	v = bpf_map_lookup_elem(inner, &a->key);
	if (!v)
		return -2;
	a->old = *v;
	*v = a->value;
	return 0;
}

SEC("syscall")
int load_by_id(struct mim_args *a)
{
	void *inner = bpf_map_lookup_elem(&by_id, &a->outer);
	__u64 *v;

	if (!inner)
		return -1;
	v = bpf_map_lookup_elem(inner, &a->key);
	if (!v)
		return -2;
	a->value = *v;
	return *v;
}

SEC("syscall")
int load_second(struct mim_args *a)
{
	__u64 *v = bpf_map_lookup_elem(&second, &a->key);

	return v ? *v : -2;
}

char LICENSE[] SEC("license") = "GPL";
