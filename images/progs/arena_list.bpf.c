// SPDX-License-Identifier: Apache-2.0
/*
 * A linked list built in an arena and summed: nodes are carved from pages
 * the program allocates, linked through `__arena` pointers, which the host
 * follows with plain dereferences (a clone's host translates them first).
 *
 * list_build: the context is a struct list_args; pushes nodes with values
 * 1..n (n = args->n, at most 1 << 20) in front of the list and returns the
 * number pushed, n, or -1 if the arena ran out. args->head is then the
 * address of the first node (value n, the last pushed) and args->pages the
 * pages allocated so far. With 16-byte nodes carved from 16-page chunks,
 * 1M nodes take 4096 pages (16 MiB) in 256 chunks.
 *
 * list_sum: walks the list from `list_head` (an __arena global: the host
 * finds it in the arena's last page, where the globals live) and returns
 * the number of nodes, setting args->sum to the sum of their values.
 * After list_build with n on a new sandbox: list_sum returns n and sum is
 * n * (n + 1) / 2 (n = 1000: 500500); a host walk from args->head through
 * `next` sees the same. A second list_build with m pushes m more nodes in
 * front: list_sum then returns n + m, sum n(n+1)/2 + m(m+1)/2.
 *
 * list_reset: forgets the list (its pages stay allocated) and returns 0.
 */
#include "bpf_arena.h"

#define NODE_CHUNK_PAGES 16

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 8192);	/* 32 MiB */
} arena SEC(".maps");

struct list_node {
	struct list_node __arena *next;
	__u64 value;
};

struct list_args {
	__u32 n;		/* in */
	__u32 pages;		/* out: pages allocated for nodes, in all */
	__u64 head;		/* out: address of the first node */
	__u64 sum;		/* out (list_sum) */
};

/* The list, in the arena so that the host finds it there. */
struct list_node __arena *__arena list_head;
__u64 __arena list_len;

/* Bump allocation of nodes from chunks of NODE_CHUNK_PAGES pages. */
static char __arena *chunk_next;
static char __arena *chunk_end;
static __u32 pages_used;

static struct list_node __arena *node_alloc(void)
{
	struct list_node __arena *node;

	if (chunk_next == chunk_end) {
		chunk_next = bpf_arena_alloc_pages(&arena, NULL, NODE_CHUNK_PAGES,
						   NUMA_NO_NODE, 0);
		if (!chunk_next)
			return NULL;
		chunk_end = chunk_next + NODE_CHUNK_PAGES * PAGE_SIZE;
		pages_used += NODE_CHUNK_PAGES;
	}
	node = (struct list_node __arena *)chunk_next;
	chunk_next += sizeof(*node);
	return node;
}

SEC("syscall")
int list_build(struct list_args *args)
{
	__u32 n = args->n;
	int i;

	if (n > 1 << 20)
		return -1;
	bpf_for(i, 0, n) {
		struct list_node __arena *node = node_alloc();

		if (!node)
			return -1;
		node->value = i + 1;
		node->next = list_head;
		list_head = node;
		list_len++;
	}
	args->head = (__u64)list_head;
	args->pages = pages_used;
	return n;
}

SEC("syscall")
int list_sum(struct list_args *args)
{
	struct list_node __arena *node;
	__u64 sum = 0;
	int count = 0;

	for (node = list_head; node && can_loop; node = node->next) {
		sum += node->value;
		count++;
	}
	args->sum = sum;
	args->head = (__u64)list_head;
	return count;
}

SEC("syscall")
int list_reset(struct list_args *args)
{
	list_head = NULL;
	list_len = 0;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
