// SPDX-License-Identifier: Apache-2.0
/*
 * Function addresses: callbacks handed to bpf_loop, one static (clang
 * relocates it against the .text section symbol, offset in the
 * instruction) and one global (relocated against its own symbol).
 *
 * loops: the context is a __u32 count; returns the sum of i + 2i over
 * i < count, both loops run (count = 10 returns 135).
 */
#include "bpfvisor.h"

static int add_index(__u32 i, void *ctx)
{
	*(__u64 *)ctx += i;
	return 0;
}

__noinline int add_twice(__u32 i, void *ctx)
{
	*(__u64 *)ctx += 2 * (__u64)i;
	return 0;
}

SEC("syscall")
int loops(__u32 *count)
{
	__u64 sum = 0;

	bpf_loop(*count, add_index, &sum, 0);
	bpf_loop(*count, add_twice, &sum, 0);
	return sum;
}

char LICENSE[] SEC("license") = "GPL";
