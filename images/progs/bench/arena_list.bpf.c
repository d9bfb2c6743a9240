// SPDX-License-Identifier: Apache-2.0
/*
 * arena_list: builds a linked list of LIST_NODES nodes in an arena and
 * walks it. Nodes come from a pool of `__arena` globals, taken in a
 * scattered order (node i is pool[(i * LIST_STEP) mod LIST_NODES]) so
 * that the walk chases pointers across the pool's pages; each run builds
 * the list afresh over the same pool, which is what freeing the previous
 * list amounts to.
 *
 * The pool is arena globals rather than bpf_arena_alloc_pages pages
 * because the host kernel (before 6.20) lets only sleepable programs call
 * the arena kfuncs, and XDP programs are not sleepable; its loader (as
 * libbpf's) allocates the globals' pages when it initialises them.
 *
 * result = the polynomial hash (x 31) of the values in walk order, the
 * last pushed first.
 */
#include "bpf_arena.h"
#include "bench.h"

#define LIST_NODES 4096
#define LIST_STEP 1597	/* odd: i -> i * LIST_STEP is a permutation */
#define LIST_SEED 9

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32);	/* pages; the pool takes 16 */
} arena SEC(".maps");

struct list_node {
	struct list_node __arena *next;
	__u64 value;
};

struct list_node __arena list_pool[LIST_NODES];

const __u32 list_input[LIST_NODES] = { BENCH_REP4096(BENCH_GEN, LIST_SEED, 0) };

__u64 result;

SEC("xdp")
int arena_list(struct xdp_md *ctx)
{
	struct list_node __arena *head = NULL;
	__u64 hash = 0;

	for (__u32 i = 0; i < LIST_NODES; i++) {
		struct list_node __arena *node = &list_pool[(i * LIST_STEP) & (LIST_NODES - 1)];

		node->value = list_input[i];
		node->next = head;
		head = node;
	}
	for (__u32 i = 0; i < LIST_NODES && head; i++) {
		hash = hash * 31 + head->value;
		head = head->next;
	}
	result = hash;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
