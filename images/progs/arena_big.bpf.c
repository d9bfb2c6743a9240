// SPDX-License-Identifier: Apache-2.0
/*
 * A 4 GiB arena (the largest) with a few pages touched: only those pages
 * cost memory.
 *
 * big_touch: the context is a struct big_args; allocates page 0 (anywhere:
 * the first free page of a new arena), then `count` - 1 more single pages
 * at exactly page i * stride (stride = args->stride pages, count * stride
 * at most 1 << 20), writing i + 1 to the first word of each. Returns the
 * number of pages allocated: `count` on a new sandbox (count = 8, stride =
 * 131072: one page every 512 MiB, the last at 3.5 GiB); args->base is page
 * 0's address. Pages already taken make it return fewer.
 *
 * big_sum: reads the first word of page i * stride for i < count and
 * returns their sum: count * (count + 1) / 2 after big_touch (36 for 8).
 */
#include "bpf_arena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ARENA_MAX_PAGES);	/* 4 GiB */
} arena SEC(".maps");

struct big_args {
	__u32 count;		/* in */
	__u32 stride;		/* in: pages */
	__u64 base;		/* in (big_sum) / out (big_touch) */
};

SEC("syscall")
int big_touch(struct big_args *args)
{
	char __arena *base = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	__u64 stride = (__u64)args->stride * PAGE_SIZE;
	int i, got = 1;

	if (!base)
		return 0;
	if ((__u64)args->count * args->stride > ARENA_MAX_PAGES)
		return -1;
	*(__u64 __arena *)base = 1;
	args->base = (__u64)base;
	bpf_for(i, 1, args->count) {
		__u64 __arena *p = bpf_arena_alloc_pages(&arena, base + i * stride, 1,
							 NUMA_NO_NODE, 0);

		if (!p)
			continue;
		*p = i + 1;
		got++;
	}
	return got;
}

SEC("syscall")
long big_sum(struct big_args *args)
{
	char __arena *base = (char __arena *)args->base;
	__u64 stride = (__u64)args->stride * PAGE_SIZE;
	long sum = 0;
	int i;

	if ((__u64)args->count * args->stride > ARENA_MAX_PAGES)
		return -1;
	bpf_for(i, 0, args->count)
		sum += *(__u64 __arena *)(base + i * stride);
	return sum;
}

char LICENSE[] SEC("license") = "GPL";
