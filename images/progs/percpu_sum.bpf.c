// SPDX-License-Identifier: Apache-2.0
/*
 * A `.percpu` counter summed over CPUs inside the program: the CPU mask
 * iterator (bpf_iter_bits over a u64 mask) visits CPUs, bpf_per_cpu_ptr
 * reaches each CPU's copy of the variable, bpf_this_cpu_ptr this CPU's.
 *
 * hit: adds 1 to this CPU's `hits`, returns the new value.
 *
 * sum_hits: the context is a struct sum_args. Sums `hits` over the CPUs of
 * `mask` below bpfvisor_nr_cpus() into `total`, sets bit c of `visited`
 * for each CPU visited, `mine` to this CPU's `hits` (via bpf_this_cpu_ptr)
 * and `missing` to bpf_per_cpu_ptr(&hits, nr_cpus) == NULL (1, as there is
 * no such CPU). Returns the number of CPUs visited. After r_c runs of `hit`
 * on each vCPU c, `total` over a mask is the sum of r_c over its CPUs.
 */
#include "bpfvisor.h"

struct sum_args {
	__u64 mask;		/* in */
	__u64 visited;		/* out */
	__u64 total;		/* out */
	__u64 mine;		/* out */
	__u32 missing;		/* out */
	__u32 pad;
};

__u64 hits SEC(".percpu") = 0;

SEC("syscall")
int hit(void *ctx)
{
	hits += 1;
	return hits;
}

SEC("syscall")
int sum_hits(struct sum_args *a)
{
	__u32 nr = bpfvisor_nr_cpus();
	__u64 mask = a->mask;
	__u64 *mine = bpf_this_cpu_ptr(&hits);
	int *cpu, visits = 0;

	a->visited = 0;
	a->total = 0;
	a->mine = mine ? *mine : ~0ULL;
	a->missing = bpf_per_cpu_ptr(&hits, nr) == NULL;
	bpf_for_each(bits, cpu, &mask, 1) {
		__u32 c = *cpu;
		__u64 *v;

		if (c >= nr)
			break;
		v = bpf_per_cpu_ptr(&hits, c);
		if (!v)
			return -1;
		a->total += *v;
		a->visited |= 1ULL << (c & 63);
		visits++;
	}
	return visits;
}

char LICENSE[] SEC("license") = "GPL";
