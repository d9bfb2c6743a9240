// SPDX-License-Identifier: Apache-2.0
/*
 * Clocks, CPU identity and random numbers: every reading the program makes
 * goes into its context for the caller to check.
 */
#include "bpfvisor.h"

struct time_args {
	__u64 ns;		/* bpf_ktime_get_ns() */
	__u64 boot_ns;		/* bpf_ktime_get_boot_ns() */
	__u64 coarse_ns;	/* bpf_ktime_get_coarse_ns() */
	__u64 later_ns;		/* bpf_ktime_get_ns() after the others */
	__u32 cpu;		/* bpf_get_smp_processor_id() */
	__s32 node;		/* bpf_get_numa_node_id() */
	__u32 random[4];	/* bpf_get_prandom_u32() x 4 */
};

SEC("syscall")
int readings(struct time_args *args)
{
	args->ns = bpf_ktime_get_ns();
	args->boot_ns = bpf_ktime_get_boot_ns();
	args->coarse_ns = bpf_ktime_get_coarse_ns();
	args->cpu = bpf_get_smp_processor_id();
	args->node = bpf_get_numa_node_id();
	for (int i = 0; i < 4; i++)
		args->random[i] = bpf_get_prandom_u32();
	args->later_ns = bpf_ktime_get_ns();
	return 0;
}

/* One clock reading per run: `bpfvisor run --repeat N` measures its cost. */
SEC("syscall")
int ktime(void *ctx)
{
	return bpf_ktime_get_ns() & 1;
}

/* One random number per run, for the same. */
SEC("syscall")
int prandom(void *ctx)
{
	return bpf_get_prandom_u32() & 1;
}

char LICENSE[] SEC("license") = "GPL";
