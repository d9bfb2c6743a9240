// SPDX-License-Identifier: Apache-2.0
/*
 * Counter increments for the per-CPU benchmark (tests/benches/percpu.rs):
 * each program adds 1 to its counter `n` times (n = the context's first
 * u64) and returns the counter's value on this CPU afterwards.
 *
 * inc_percpu_data: a `.percpu` u64 (plain load/add/store);
 * inc_percpu_array: element 0 of a PERCPU_ARRAY (lookup each time);
 * inc_shared_atomic: a shared `.bss` u64 with an atomic add.
 *
 * After runs with n = a, b, ... on one vCPU of a new sandbox, each per-CPU
 * program returns a + b + ... for that vCPU; inc_shared_atomic returns the
 * sum over all vCPUs' runs once they are done.
 */
#include "bpfvisor.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pa_counter SEC(".maps");

__u64 pc_counter SEC(".percpu");
__u64 shared_counter;

#define barrier() asm volatile("" ::: "memory")

SEC("syscall")
__u64 inc_percpu_data(__u64 *n)
{
	__u64 count = *n;

	for (__u64 i = 0; i < count; i++) {
		pc_counter++;
		barrier();
	}
	return pc_counter;
}

SEC("syscall")
__u64 inc_percpu_array(__u64 *n)
{
	__u64 count = *n;
	__u32 zero = 0;
	__u64 *v = 0;

	for (__u64 i = 0; i < count; i++) {
		v = bpf_map_lookup_elem(&pa_counter, &zero);
		if (!v)
			return 0;
		(*v)++;
		barrier();
	}
	v = bpf_map_lookup_elem(&pa_counter, &zero);
	return v ? *v : 0;
}

SEC("syscall")
__u64 inc_shared_atomic(__u64 *n)
{
	__u64 count = *n;

	for (__u64 i = 0; i < count; i++)
		__sync_fetch_and_add(&shared_counter, 1);
	return shared_counter;
}

char LICENSE[] SEC("license") = "GPL";
