// SPDX-License-Identifier: Apache-2.0
/*
 * The shape of a benchmark workload, for the engines' own tests: an XDP
 * program that reads its input from global data and leaves its checksum
 * in the global `result`.
 *
 * sum: result = the sum of i * i for i in 0 .. n - 1 (n a `const volatile`
 * knob, 1000 unless set: 332833500), the same after every run; returns
 * XDP_PASS (2).
 *
 * refused: stores what it reads at address 0 in result: our verifier
 * leaves NULL reads to the trap handler, the kernel's refuses the program
 * ("R1 invalid mem access 'scalar'"), for tests of how an engine shows a
 * program the kernel cannot run.
 */
#include "bpfvisor.h"

const volatile __u32 n = 1000;
__u64 result;

SEC("xdp")
int sum(void *ctx)
{
	__u64 acc = 0;

	for (__u32 i = 0; i < n && i < 100000; i++)
		acc += (__u64)i * i;
	result = acc;
	return XDP_PASS;
}

SEC("xdp")
int refused(void *ctx)
{
	__u64 *p = BPFVISOR_OPAQUE((__u64 *)0);

	result = *p;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
