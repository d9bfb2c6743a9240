// SPDX-License-Identifier: Apache-2.0
/*
 * Iterating CPUs inside a program: the vCPU count as a bpf_for bound
 * (bpfvisor_nr_cpus) and the kernel's bit iterator over a CPU mask
 * (bpf_iter_bits_*), summing a PERCPU_ARRAY across CPUs.
 *
 * cpus_hit: adds the context's __u64 `by` (0 counts as 1) to this CPU's
 * `stats[0]` and returns the CPU's id.
 *
 * cpus_sum: the context is a struct sum_args. Visits the CPUs of `mask`
 * (every vCPU when `all` is non-zero; bits at or past nr_cpus are
 * ignored) through bpf_iter_bits, and sums their `stats[0]`. Reports
 * exactly which CPUs it visited (`visited`, bit i = vCPU i, and `visits`,
 * the number of loop turns: one per CPU, in ascending order, else
 * `err` = -1), the sum over every CPU through bpf_for(cpu, 0, nr_cpus)
 * (`total_all`), and nr_cpus. Returns `total`. After runs of cpus_hit on
 * several vCPUs, with `all` set: visited = (1 << nr_cpus) - 1, visits =
 * nr_cpus, total = total_all = the sum of their `by`s.
 *
 * cpus_bits: the context is a struct bits_args; starts a bit iterator over
 * `nr_words` words at `addr` (at the context's own `words` when `addr` is
 * 0 and `nr_words` is non-zero; a NULL mask when both are 0, which gives
 * -EINVAL) and reports bpf_iter_bits_new's return, how many bits next
 * produced and their sum. Returns 0. An unreadable address: ret = -EFAULT
 * (-14) and no bits, with no trap and no VM exit; more than 511 words:
 * -E2BIG (-7). words = {1 << 3, 1 << 63}, nr_words = 2: bits 3 and 127,
 * count 2, sum 130.
 *
 * nr_cpus_rodata: returns the `const volatile` global `loader_nr_cpus`,
 * 0 unless the loader set it (Object::set_variable), as kernel programs
 * learn the CPU count from libbpf skeletons.
 */
#include "bpfvisor.h"

struct sum_args {
	__u64 mask;		/* in: CPUs to visit */
	__u32 all;		/* in: non-zero = every vCPU, mask ignored */
	__u32 nr_cpus;		/* out: bpfvisor_nr_cpus() */
	__u64 visited;		/* out: bit i set when vCPU i was visited */
	__u32 visits;		/* out: loop turns */
	__s32 err;		/* out: 0, or -1 if a CPU came out of order */
	__u64 total;		/* out: sum of stats[0] over visited CPUs */
	__u64 total_all;	/* out: sum over 0..nr_cpus-1 via bpf_for */
};

struct bits_args {
	__u64 addr;		/* in: where the mask is (0: `words`) */
	__u32 nr_words;		/* in */
	__u32 count;		/* out: bits bpf_iter_bits_next produced */
	__s64 ret;		/* out: bpf_iter_bits_new's return */
	__u64 sum;		/* out: sum of those bits */
	__u64 words[4];		/* in: a mask in the context */
};

const volatile __u32 loader_nr_cpus = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

SEC("syscall")
int cpus_hit(__u64 *by)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&stats, &zero);

	if (!v)
		return -1;
	/* Only this CPU writes its value: no atomics needed. */
	*v += *by ? *by : 1;
	return bpf_get_smp_processor_id();
}

SEC("syscall")
int cpus_sum(struct sum_args *a)
{
	__u32 zero = 0, nr = bpfvisor_nr_cpus();
	__u64 mask = a->mask;
	int *cpu, last = -1, i;

	if (a->all)
		mask = nr >= 64 ? ~0ULL : (1ULL << nr) - 1;
	a->nr_cpus = nr;
	a->visited = 0;
	a->visits = 0;
	a->err = 0;
	a->total = 0;
	a->total_all = 0;
	bpf_for_each(bits, cpu, &mask, 1) {
		__u32 c = *cpu;
		__u64 *v;

		/* Bits come in ascending order: the rest are past nr_cpus too. */
		if (c >= nr)
			break;
		if ((int)c <= last)
			a->err = -1;
		last = c;
		a->visits++;
		a->visited |= 1ULL << (c & 63);
		v = bpf_map_lookup_percpu_elem(&stats, &zero, c);
		if (v)
			a->total += *v;
	}
	bpf_for(i, 0, nr) {
		__u64 *v = bpf_map_lookup_percpu_elem(&stats, &zero, i);

		if (v)
			a->total_all += *v;
	}
	return a->total;
}

SEC("syscall")
int cpus_bits(struct bits_args *a)
{
	const __u64 *mask = (const __u64 *)a->addr;
	int *bit;

	if (!mask && a->nr_words)
		mask = a->words;
	a->count = 0;
	a->sum = 0;
	a->ret = 0;
	bpf_for_each(bits, bit, mask, a->nr_words) {
		a->count++;
		a->sum += *bit;
	}
	/* The loop starts the iterator once more only to report its return. */
	{
		struct bpf_iter_bits it;

		a->ret = bpf_iter_bits_new(&it, mask, a->nr_words);
		bpf_iter_bits_destroy(&it);
	}
	return 0;
}

SEC("syscall")
int nr_cpus_rodata(void *ctx)
{
	return loader_nr_cpus;
}

char LICENSE[] SEC("license") = "GPL";
