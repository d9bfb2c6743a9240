// SPDX-License-Identifier: Apache-2.0
/*
 * Allocation churn: pages allocated, checked, dirtied and freed again and
 * again. Freed pages must come back zeroed, and the arena's memory must
 * stay bounded by what is allocated at once (the host releases freed
 * pages).
 *
 * churn: the context is a struct churn_args; `rounds` times (at most
 * 100000), allocates `pages` pages (1 to 64) anywhere, counts the pages
 * whose first, middle or last word is not 0 (args->dirty), writes all
 * three, and frees the pages. Returns the number of rounds whose
 * allocation succeeded: `rounds` (args->failed = 0) and args->dirty = 0 on
 * any sandbox, however many churn runs came before. The arena has 256
 * pages, so at most `pages` of them are in use at any time.
 *
 * churn_hold: allocates `pages` pages (args->pages) and keeps them: their
 * address in args->addr, returns 0, or -1 when the arena is full. After
 * 256 pages are held, churn gets nothing (returns 0, failed = rounds).
 */
#include "bpf_arena.h"

#define ARENA_PAGES 256

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ARENA_PAGES);
} arena SEC(".maps");

struct churn_args {
	__u32 rounds;		/* in */
	__u32 pages;		/* in */
	__u32 dirty;		/* out: pages seen not zeroed */
	__u32 failed;		/* out: rounds whose allocation failed */
	__u64 addr;		/* out (churn_hold) */
};

#define WORDS (PAGE_SIZE / 8)

SEC("syscall")
int churn(struct churn_args *args)
{
	__u32 pages = args->pages, dirty = 0, failed = 0;
	int r, ok = 0;

	if (pages == 0 || pages > 64 || args->rounds > 100000)
		return -1;
	bpf_for(r, 0, args->rounds) {
		__u64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, pages,
							 NUMA_NO_NODE, 0);
		int i;

		if (!p) {
			failed++;
			continue;
		}
		bpf_for(i, 0, pages) {
			__u64 __arena *page = p + i * WORDS;

			if (page[0] || page[WORDS / 2] || page[WORDS - 1])
				dirty++;
			page[0] = r + 1;
			page[WORDS / 2] = r + 1;
			page[WORDS - 1] = r + 1;
		}
		bpf_arena_free_pages(&arena, p, pages);
		ok++;
	}
	args->dirty = dirty;
	args->failed = failed;
	return ok;
}

SEC("syscall")
int churn_hold(struct churn_args *args)
{
	__u64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, args->pages,
						 NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	*p = 1;
	args->addr = (__u64)p;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
