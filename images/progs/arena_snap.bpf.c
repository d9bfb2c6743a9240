// SPDX-License-Identifier: Apache-2.0
/*
 * Pages filled, checked and freed by address: for snapshots and clones of
 * a sandbox with an arena (tests/tests/arena_snapshot.rs), where a page a
 * clone frees and allocates again must read as zeros while its snapshot
 * and its siblings keep their bytes.
 *
 * The context is a struct snap_args; `pages` is 1 to 16 (else -1).
 *
 * snap_fill: allocates `pages` pages at args->addr (0: anywhere; the
 * address is then written back to args->addr), counts the words of those
 * pages that are not 0 (args->stale: 0, whatever ran before, since an
 * allocation hands out zeroed pages), writes `value` to every word and
 * returns 0; -1 if the pages cannot be allocated (taken, or the arena of
 * 64 pages is full). On a new sandbox the first snap_fill gets page 0.
 *
 * snap_check: counts the words of the pages at args->addr that are not
 * `value` and returns that count (also in args->stale): 0 after a
 * snap_fill with that value, pages * 512 for pages that are not
 * allocated (they read as 0) unless value is 0.
 *
 * snap_free: frees the pages at args->addr and returns 0.
 */
#include "bpf_arena.h"

#define ARENA_PAGES 64
#define MAX_PAGES 16
#define WORDS (PAGE_SIZE / 8)

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ARENA_PAGES);
} arena SEC(".maps");

struct snap_args {
	__u64 addr;		/* in (0: anywhere, snap_fill) / out */
	__u32 pages;		/* in */
	__u32 stale;		/* out */
	__u64 value;		/* in */
};

SEC("syscall")
int snap_fill(struct snap_args *args)
{
	__u32 pages = args->pages, stale = 0;
	__u64 __arena *p;
	int i;

	if (pages == 0 || pages > MAX_PAGES)
		return -1;
	p = bpf_arena_alloc_pages(&arena, (void __arena *)args->addr, pages,
				  NUMA_NO_NODE, 0);
	if (!p)
		return -1;
	bpf_for(i, 0, pages * WORDS) {
		if (p[i])
			stale++;
		p[i] = args->value;
	}
	args->addr = (__u64)p;
	args->stale = stale;
	return 0;
}

SEC("syscall")
int snap_check(struct snap_args *args)
{
	__u64 __arena *p = (__u64 __arena *)args->addr;
	__u32 pages = args->pages, stale = 0;
	int i;

	if (pages == 0 || pages > MAX_PAGES)
		return -1;
	bpf_for(i, 0, pages * WORDS)
		if (p[i] != args->value)
			stale++;
	args->stale = stale;
	return stale;
}

SEC("syscall")
int snap_free(struct snap_args *args)
{
	if (args->pages == 0 || args->pages > MAX_PAGES)
		return -1;
	bpf_arena_free_pages(&arena, (void __arena *)args->addr, args->pages);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
