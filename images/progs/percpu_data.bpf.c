// SPDX-License-Identifier: Apache-2.0
/*
 * Global per-CPU data: variables in SEC(".percpu") have one copy per vCPU,
 * each starting as the initial image below. The section's internal map is
 * a PERCPU_ARRAY named ".percpu" with one value (the whole section), which
 * the host reads and writes per CPU.
 *
 * Variables, in section order (offsets from the start of the section):
 *   __u64 counter   @ 0    initial 0
 *   __u8  tag       @ 8    initial 7
 *   __u32 arr[3]    @ 12   initial {1, 2, 3}
 *   struct pair pt  @ 24   initial {.a = 10, .b = 20}
 * (32 bytes in all).
 *
 * percpu_bump: the context is a struct bump_args; adds cpu + 1 to this
 * CPU's `counter` (cpu = bpf_get_smp_processor_id()) and `tag` to this
 * CPU's arr[0], and reports the CPU and this CPU's values. Returns the new
 * `counter`: after one run on each of 4 vCPUs of a new sandbox, CPU c's
 * `counter` is c + 1 and its arr[0] is 8 (1 + 7), and each run returns
 * cpu + 1; r runs on CPU c give counter r * (c + 1).
 */
#include "bpfvisor.h"

struct pair {
	__u32 a;
	__u32 b;
};

struct bump_args {
	__u32 cpu;		/* out: bpf_get_smp_processor_id() */
	__u32 tag;		/* out: this CPU's tag */
	__u64 counter;		/* out: this CPU's new counter */
	__u32 arr_sum;		/* out: sum of this CPU's arr[] after the add */
	__u32 pair_sum;		/* out: this CPU's pt.a + pt.b */
};

__u64 counter SEC(".percpu") = 0;
__u8 tag SEC(".percpu") = 7;
__u32 arr[3] SEC(".percpu") = { 1, 2, 3 };
struct pair pt SEC(".percpu") = { .a = 10, .b = 20 };

SEC("syscall")
int percpu_bump(struct bump_args *a)
{
	__u32 cpu = bpf_get_smp_processor_id();

	counter += cpu + 1;
	arr[0] += tag;
	a->cpu = cpu;
	a->tag = tag;
	a->counter = counter;
	a->arr_sum = arr[0] + arr[1] + arr[2];
	a->pair_sum = pt.a + pt.b;
	return counter;
}

char LICENSE[] SEC("license") = "GPL";
