// SPDX-License-Identifier: Apache-2.0
/*
 * Accesses to arena pages nobody allocated: loads give 0, stores and
 * atomics are dropped, and the program goes on, as the kernel's
 * BPF_PROBE_MEM32 accesses behave.
 *
 * fault_probe: the context is a struct fault_args. Allocates one page
 * (page 0 of the arena on a new sandbox: args->base), writes 42 to it,
 * then through page 10, which nothing ever allocates: reads it (0), writes
 * 7 to it, reads it again (0), fetch-adds 5 (returns 0), fetch-ors 1 and
 * compare-and-swaps 0 -> 9 (both dropped), reads it once more (0); reads
 * 8 bytes past the arena's last page (0); reads its own page back (42);
 * frees its page. Returns 0 when every value was as stated, else a bit per
 * surprise (1 read before, 2 read after the store, 4 fetch-add, 8 read
 * after the atomics, 16 past the end, 32 own page). Same result on every
 * run.
 */
#include "bpf_arena.h"

#define ARENA_PAGES 64
#define WORDS (PAGE_SIZE / 8)

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ARENA_PAGES);
} arena SEC(".maps");

struct fault_args {
	__u64 base;		/* out: the page allocated */
	__u64 before;		/* out: page 10 read before the store */
	__u64 after;		/* out: ... after the store */
	__u64 fetched;		/* out: what fetch-add returned */
	__u64 last;		/* out: page 10 after the atomics */
	__u64 past_end;		/* out: 8 bytes past the arena */
	__u64 own;		/* out: the allocated page's word */
};

SEC("syscall")
int fault_probe(struct fault_args *a)
{
	__u64 __arena *base = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	volatile __u64 __arena *never;
	int surprises = 0;

	if (!base)
		return -1;
	*base = 42;
	never = base + 10 * WORDS;
	a->before = *never;
	*never = 7;
	a->after = *never;
	a->fetched = __sync_fetch_and_add(never, 5);
	__sync_fetch_and_or(never, 1);
	__sync_val_compare_and_swap(never, 0, 9);
	a->last = *never;
	a->past_end = *(volatile __u64 __arena *)(base + ARENA_PAGES * WORDS + 1);
	a->own = *(volatile __u64 __arena *)base;
	a->base = (__u64)base;
	bpf_arena_free_pages(&arena, base, 1);

	surprises |= a->before != 0;
	surprises |= (a->after != 0) << 1;
	surprises |= (a->fetched != 0) << 2;
	surprises |= (a->last != 0) << 3;
	surprises |= (a->past_end != 0) << 4;
	surprises |= (a->own != 42) << 5;
	return surprises;
}

char LICENSE[] SEC("license") = "GPL";
