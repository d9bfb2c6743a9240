// SPDX-License-Identifier: Apache-2.0
/*
 * The smallest BTF-defined map: an ARRAY of 16 counters. count: the
 * context is a __u32; increments counters[arg & 15] and returns its new
 * value (1, 2, 3... for repeated runs with the same argument).
 */
#include "bpfvisor.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

SEC("syscall")
int count(__u32 *arg)
{
	__u32 key = *arg & 15;
	__u64 *value = bpf_map_lookup_elem(&counters, &key);

	if (!value)
		return -1;
	*value += 1;
	return *value;
}

char LICENSE[] SEC("license") = "GPL";
