// SPDX-License-Identifier: Apache-2.0
/*
 * A QUEUE and a STACK of 4 __u32 each, with the kernel's semantics.
 *
 * queue_stack: takes no input; fills a struct qs_result. On each map:
 * pushes 1, 2, 3, 4 (full); pushes 5 without flags, which fails with
 * -E2BIG (-7); pushes 5 with BPF_EXIST, which drops the oldest element (1)
 * to make room; peeks; pops until empty; pops once more, which fails with
 * -ENOENT (-2). On a new sandbox (both maps empty) the result is:
 *   push_full = {-7, -7}, push_exist = {0, 0}, peek = {2, 5},
 *   queue = {2, 3, 4, 5}, stack = {5, 4, 3, 2}, popped = {4, 4},
 *   pop_empty = {-2, -2}; returns 8 (elements popped).
 */
#include "bpfvisor.h"

#define QS_MAX 4

struct qs_result {
	__s32 push_full[2];	/* [0] queue, [1] stack */
	__s32 push_exist[2];
	__u32 peek[2];
	__u32 popped[2];
	__s32 pop_empty[2];
	__u32 queue[QS_MAX];	/* in pop order */
	__u32 stack[QS_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, QS_MAX);
	__type(value, __u32);
} fifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, QS_MAX);
	__uint(value_size, sizeof(__u32));
} lifo SEC(".maps");

static __u32 exercise(void *map, int which, struct qs_result *r, __u32 *out)
{
	__u32 v, n = 0;

	for (v = 1; v <= QS_MAX; v++)
		bpf_map_push_elem(map, &v, 0);
	v = QS_MAX + 1;
	r->push_full[which] = bpf_map_push_elem(map, &v, 0);
	r->push_exist[which] = bpf_map_push_elem(map, &v, BPF_EXIST);
	bpf_map_peek_elem(map, &r->peek[which]);
	for (int i = 0; i < QS_MAX; i++) {
		if (bpf_map_pop_elem(map, &v))
			break;
		out[i] = v;
		n++;
	}
	r->popped[which] = n;
	r->pop_empty[which] = bpf_map_pop_elem(map, &v);
	return n;
}

SEC("syscall")
int queue_stack(struct qs_result *r)
{
	return exercise(&fifo, 0, r, r->queue) + exercise(&lifo, 1, r, r->stack);
}

char LICENSE[] SEC("license") = "GPL";
