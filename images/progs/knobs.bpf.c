// SPDX-License-Identifier: Apache-2.0
/*
 * `const volatile` knobs a loader sets before loading (bpfvisor run
 * --set NAME=VALUE), as libbpf skeletons set `skel->rodata->...`, next to
 * writable globals in .data, .bss and a named .data section.
 *
 * scale: the context is a __u64 x; returns x * multiplier + bias, and
 * records it in `last` and counts the run in `runs`. With the defaults
 * (multiplier = 2, bias = 0), x = 21 returns 42; after --set multiplier=5
 * --set bias=-3, x = 21 returns 102. With `negate` set (1), the result is
 * negated.
 */
#include "bpfvisor.h"

/* .rodata: set before load, constant after. */
const volatile __u32 multiplier = 2;
const volatile __s64 bias = 0;
const volatile __u8 negate = 0;
/* .bss */
__s64 last;
/* .data.stats */
__u64 runs SEC(".data.stats") = 0;

SEC("syscall")
int scale(__u64 *x)
{
	__s64 r = (__s64)(*x * multiplier) + bias;

	if (negate)
		r = -r;
	last = r;
	runs++;
	return r;
}

char LICENSE[] SEC("license") = "GPL";
