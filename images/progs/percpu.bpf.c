// SPDX-License-Identifier: Apache-2.0
/*
 * Per-CPU counters: a PERCPU_ARRAY and a PERCPU_HASH keep one value per
 * vCPU, summed with bpf_map_lookup_percpu_elem.
 *
 * percpu_hit: the context is a struct hit_args; increments this CPU's
 * `hits[0]` and this CPU's `per_key[key]` (created at 1), and reports the
 * CPU and both new values. Returns the new `hits[0]` of this CPU: after r
 * runs on one vCPU of a new sandbox, `mine` = r.
 *
 * percpu_sum: the context is a struct sum_args; sums `hits[0]` and
 * `per_key[key]` over CPUs 0..nr_cpus-1 (absent per-CPU values count 0)
 * and returns the array total: the number of percpu_hit runs on those
 * CPUs, whichever ran them.
 */
#include "bpfvisor.h"

struct hit_args {
	__u32 key;		/* in */
	__u32 cpu;		/* out: bpf_get_smp_processor_id() */
	__u64 mine;		/* out: this CPU's hits[0] */
	__u64 key_mine;		/* out: this CPU's per_key[key] */
};

struct sum_args {
	__u32 nr_cpus;		/* in (at most 64) */
	__u32 key;		/* in */
	__u64 total;		/* out: sum of hits[0] */
	__u64 key_total;	/* out: sum of per_key[key] */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} per_key SEC(".maps");

SEC("syscall")
int percpu_hit(struct hit_args *a)
{
	__u32 zero = 0;
	__u64 one = 1;
	__u64 *v = bpf_map_lookup_elem(&hits, &zero);

	a->cpu = bpf_get_smp_processor_id();
	if (!v)
		return -1;
	/* Only this CPU writes its value: no atomics needed. */
	*v += 1;
	a->mine = *v;
	v = bpf_map_lookup_elem(&per_key, &a->key);
	if (v) {
		*v += 1;
		a->key_mine = *v;
	} else {
		bpf_map_update_elem(&per_key, &a->key, &one, BPF_NOEXIST);
		a->key_mine = 1;
	}
	return a->mine;
}

SEC("syscall")
int percpu_sum(struct sum_args *a)
{
	__u32 zero = 0, n = a->nr_cpus;

	if (n > 64)
		n = 64;
	a->total = 0;
	a->key_total = 0;
	for (__u32 cpu = 0; cpu < n; cpu++) {
		__u64 *v = bpf_map_lookup_percpu_elem(&hits, &zero, cpu);

		if (v)
			a->total += *v;
		v = bpf_map_lookup_percpu_elem(&per_key, &a->key, cpu);
		if (v)
			a->key_total += *v;
	}
	return a->total;
}

char LICENSE[] SEC("license") = "GPL";
