// SPDX-License-Identifier: Apache-2.0
/*
 * Map operation costs, for tests/benches/maps.rs: each program runs
 * bpf_loop(args->n) with one map operation per iteration, on key
 * i % KEYS (KEYS = 64, all populated by `setup`), and `baseline` runs the
 * same loop with the same arithmetic and no map call, so that one
 * operation costs (t_op - t_baseline) / n. bpf_loop rather than a plain
 * loop: the kernel's verifier accepts it for any n (up to 1 << 23), so the
 * same object also runs under BPF_PROG_TEST_RUN; a plain loop over a
 * context-supplied n is refused there as too complex.
 *
 * The context is a struct bench_args { __u32 n; __u32 pad; __u64 sum; }.
 *
 * setup: array[k] = hash[k] = lru[k] = this CPU's percpu[k] = k + 1 for
 * k in 0..KEYS; returns the number of successful updates, 4 * KEYS = 256.
 *
 * baseline, helper_call, lookup_array, lookup_percpu_array, lookup_hash,
 * lookup_lru, lookup_array_helper: sum = the sum over i in 0..n of
 * (i % KEYS) + 1 (from the map, after setup on the same CPU); return the
 * number of iterations whose lookup found the key: n (baseline,
 * helper_call: n). For n = 100: sum = 2080 + 666 = 2746. helper_call adds
 * bpf_get_numa_node_id() (0) to each term: a helper call that does
 * nothing.
 *
 * lookup_array_helper: as lookup_array, with the helper called by number
 * (callx) so that no JIT can inline it; bpfvisor only, the kernel refuses
 * callx.
 *
 * update_array, update_hash: for each i, map[i % KEYS] = (i % KEYS) + 1
 * (the value setup wrote, so the maps keep their contents; update_hash
 * with BPF_EXIST: the key is always present); sum as above; return the
 * number of updates that returned 0: n.
 */
#include "bpfvisor.h"

#define KEYS 64

struct bench_args {
	__u32 n;	/* in: iterations */
	__u32 pad;
	__u64 sum;	/* out */
};

struct loop_ctx {
	__u64 sum;
	__u64 hits;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KEYS);
	__type(key, __u32);
	__type(value, __u64);
} array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KEYS);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} lru SEC(".maps");

static int fill_one(__u32 k, int *done)
{
	__u64 value = k + 1;

	*done += bpf_map_update_elem(&array, &k, &value, BPF_ANY) == 0;
	*done += bpf_map_update_elem(&percpu, &k, &value, BPF_ANY) == 0;
	*done += bpf_map_update_elem(&hash, &k, &value, BPF_ANY) == 0;
	*done += bpf_map_update_elem(&lru, &k, &value, BPF_ANY) == 0;
	return 0;
}

SEC("syscall")
int setup(struct bench_args *args)
{
	int done = 0;

	bpf_loop(KEYS, fill_one, &done, 0);
	return done;
}

static int plain(__u32 index, struct loop_ctx *ctx)
{
	ctx->sum += (index % KEYS) + 1;
	ctx->hits++;
	return 0;
}

SEC("syscall")
int baseline(struct bench_args *args)
{
	struct loop_ctx ctx = {};

	bpf_loop(args->n, plain, &ctx, 0);
	args->sum = ctx.sum;
	return ctx.hits;
}

/* The floor of a helper call: bpf_get_numa_node_id, 0 in both. */
static int numa_one(__u32 index, struct loop_ctx *ctx)
{
	ctx->sum += (index % KEYS) + 1 + bpf_get_numa_node_id();
	ctx->hits++;
	return 0;
}

SEC("syscall")
int helper_call(struct bench_args *args)
{
	struct loop_ctx ctx = {};

	bpf_loop(args->n, numa_one, &ctx, 0);
	args->sum = ctx.sum;
	return ctx.hits;
}

/* One lookup per iteration in MAP; a miss adds nothing. */
#define LOOKUP_BENCH(name, map)						\
static int name##_one(__u32 index, struct loop_ctx *ctx)		\
{									\
	__u32 key = index % KEYS;					\
	__u64 *value = bpf_map_lookup_elem(&map, &key);			\
									\
	if (value) {							\
		ctx->sum += *value;					\
		ctx->hits++;						\
	}								\
	return 0;							\
}									\
									\
SEC("syscall")								\
int name(struct bench_args *args)					\
{									\
	struct loop_ctx ctx = {};					\
									\
	bpf_loop(args->n, name##_one, &ctx, 0);				\
	args->sum = ctx.sum;						\
	return ctx.hits;						\
}

LOOKUP_BENCH(lookup_array, array)
LOOKUP_BENCH(lookup_percpu_array, percpu)
LOOKUP_BENCH(lookup_hash, hash)
LOOKUP_BENCH(lookup_lru, lru)

/*
 * The ARRAY lookup through the helper: helper 1 called by number (callx),
 * which bpfvisor's JIT does not inline, unlike `call 1`. The kernel's
 * verifier refuses callx; loaders for the kernel skip this program.
 */
typedef void *(*lookup_fn)(void *map, const void *key);

static int lookup_array_helper_one(__u32 index, struct loop_ctx *ctx)
{
	__u32 key = index % KEYS;
	lookup_fn lookup = (lookup_fn)BPFVISOR_OPAQUE((unsigned long)BPF_FUNC_map_lookup_elem);
	__u64 *value = lookup(&array, &key);

	if (value) {
		ctx->sum += *value;
		ctx->hits++;
	}
	return 0;
}

SEC("syscall")
int lookup_array_helper(struct bench_args *args)
{
	struct loop_ctx ctx = {};

	bpf_loop(args->n, lookup_array_helper_one, &ctx, 0);
	args->sum = ctx.sum;
	return ctx.hits;
}

/* One update per iteration in MAP, writing back what setup wrote. */
#define UPDATE_BENCH(name, map, flags)					\
static int name##_one(__u32 index, struct loop_ctx *ctx)		\
{									\
	__u32 key = index % KEYS;					\
	__u64 value = key + 1;						\
									\
	if (bpf_map_update_elem(&map, &key, &value, flags) == 0) {	\
		ctx->sum += value;					\
		ctx->hits++;						\
	}								\
	return 0;							\
}									\
									\
SEC("syscall")								\
int name(struct bench_args *args)					\
{									\
	struct loop_ctx ctx = {};					\
									\
	bpf_loop(args->n, name##_one, &ctx, 0);				\
	args->sum = ctx.sum;						\
	return ctx.hits;						\
}

UPDATE_BENCH(update_array, array, BPF_ANY)
UPDATE_BENCH(update_hash, hash, BPF_EXIST)

char LICENSE[] SEC("license") = "GPL";
