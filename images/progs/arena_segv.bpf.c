// SPDX-License-Identifier: Apache-2.0
/*
 * An arena with BPF_F_SEGV_ON_FAULT: the host may touch only pages a
 * program allocated; a host touch of any other page is an error instead
 * of allocating it (the kernel's user space gets SIGSEGV). Programs are
 * not affected: their loads of unallocated pages still give 0.
 *
 * segv_alloc: allocates one page, writes 0x5eed to its first word and
 * returns 0 with its address in args->addr and args->unallocated set to
 * what the page after it reads (0); -1 if the arena (16 pages) is full.
 * On a new sandbox the first run gets the arena's page 0: the host can
 * read 0x5eed there, and touching page 1 is an error.
 */
#include "bpf_arena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT);
	__uint(max_entries, 16);
} arena SEC(".maps");

struct segv_args {
	__u64 addr;		/* out */
	__u64 unallocated;	/* out */
};

SEC("syscall")
int segv_alloc(struct segv_args *args)
{
	__u64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	*p = 0x5eed;
	args->addr = (__u64)p;
	args->unallocated = *(volatile __u64 __arena *)(p + PAGE_SIZE / 8);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
