// SPDX-License-Identifier: Apache-2.0
/*
 * Bounded loops three ways: bpf_loop with a callback, bpf_for and
 * bpf_repeat (the numeric iterator kfuncs). Each program takes a
 * struct loop_args and fills in its results.
 */
#include "bpfvisor.h"

struct loop_args {
	__s32 start;	/* in: first value (bpf_for) */
	__s32 end;	/* in: end, exclusive (bpf_for); count (bpf_loop, bpf_repeat) */
	__s32 stop;	/* in: bpf_loop's callback breaks at this index (-1: never) */
	__s32 ret;	/* out: what bpf_loop / bpf_iter_num_new returned */
	__s64 sum;	/* out: sum of the values visited */
	__u64 count;	/* out: how many were visited */
};

struct loop_ctx {
	__s64 sum;
	__u64 count;
	__s32 stop;
};

static int visit(__u32 index, struct loop_ctx *ctx)
{
	ctx->sum += index;
	ctx->count++;
	return index == (__u32)ctx->stop;	/* 1: break */
}

SEC("syscall")
int loop_sum(struct loop_args *args)
{
	struct loop_ctx ctx = { .stop = args->stop };

	args->ret = bpf_loop(args->end, visit, &ctx, 0);
	args->sum = ctx.sum;
	args->count = ctx.count;
	return args->ret;
}

SEC("syscall")
int for_sum(struct loop_args *args)
{
	__s64 sum = 0;
	__u64 count = 0;
	int i;

	bpf_for(i, args->start, args->end) {
		sum += i;
		count++;
	}
	args->sum = sum;
	args->count = count;
	return count;
}

SEC("syscall")
int repeat_count(struct loop_args *args)
{
	__u64 count = 0;

	bpf_repeat(args->end)
		count++;
	args->count = count;
	return count;
}

/* A bpf_for inside a bpf_loop callback: a triangle of n rows. */
static int row(__u32 index, __u64 *cells)
{
	int j;

	bpf_for(j, 0, index + 1)
		(*cells)++;
	return 0;
}

SEC("syscall")
int triangle(struct loop_args *args)
{
	__u64 cells = 0;

	args->ret = bpf_loop(args->end, row, &cells, 0);
	args->count = cells;
	return cells;
}

/* The iterator kfuncs called directly, with the kernel's error returns. */
SEC("syscall")
int iter_errors(struct loop_args *args)
{
	struct bpf_iter_num it;
	int *v, ret;

	ret = bpf_iter_num_new(&it, args->start, args->end);
	args->ret = ret;
	args->count = 0;
	while ((v = bpf_iter_num_next(&it)))
		args->count++;
	bpf_iter_num_destroy(&it);
	return ret;
}

char LICENSE[] SEC("license") = "GPL";
