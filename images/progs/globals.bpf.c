// SPDX-License-Identifier: Apache-2.0
/*
 * Global data in every kind of section: .data, .bss, .rodata, named variants,
 * and a `const volatile` knob a loader may set before the program runs.
 */
#include "bpfvisor.h"

/* .rodata: the knob. `volatile` keeps clang from folding its value in. */
const volatile __u32 scale = 3;
/* .data */
__u64 calls = 100;
/* .bss */
__u64 total;
/* named variants */
__u32 table[4] SEC(".data.table") = { 1, 2, 3, 4 };
const __u32 weights[4] SEC(".rodata.weights") = { 10, 20, 30, 40 };

SEC("syscall")
int globals(__u32 *arg)
{
	__u32 x = *arg;
	__u64 sum = 0;

	for (int i = 0; i < 4; i++)
		sum += (__u64)table[i] * weights[i];
	calls++;
	total += x * scale + sum;
	bpf_printk("calls=%llu total=%llu", calls, total);
	return total;
}

char LICENSE[] SEC("license") = "GPL";
