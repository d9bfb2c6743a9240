// SPDX-License-Identifier: Apache-2.0
/*
 * Atomics on arena memory from several vCPUs at once: __arena globals and
 * a page allocated at run time.
 *
 * atomic_setup: allocates the shared page (once; later runs keep it) and
 * returns 0, -1 if the allocation failed. Run it before atomic_hammer.
 *
 * atomic_hammer: the context is a struct hammer_args: `times` (at most
 * 1000000) in, `seen` out; each
 * of `times` iterations: add64 += 1 (lock add), add32 += 2 (32 bits),
 * cas64 += 1 through a compare-and-swap retry loop, page[0] += 3 on
 * the shared page, or_cpus |= 1 << cpu (fetch-or), last = i (xchg).
 * Returns 0, or -1 without the shared page. args->seen is the OR of what
 * the fetch-ors returned (a subset of the vCPU bits) and of the low bit of
 * what the fetch-adds of add32 returned (always 0).
 * After atomic_setup, then 4 vCPUs each running atomic_hammer with times
 * t, r times each, all at once: add64 = cas64 = 4tr, add32 = 8tr (mod
 * 2^32), page[0] = 12tr, or_cpus = 0xf (vCPUs 0-3).
 *
 * atomic_read: fills a struct atomic_totals with those values; returns 0.
 */
#include "bpf_arena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16);
} arena SEC(".maps");

struct hammer_args {
	__u32 times;		/* in */
	__u32 pad;
	__u64 seen;		/* out */
};

struct atomic_totals {
	__u64 add64;
	__u64 add32;
	__u64 cas64;
	__u64 page;
	__u64 or_cpus;
	__u64 last;
};

__u64 __arena add64;
__u32 __arena add32;
__u64 __arena cas64;
__u64 __arena or_cpus;
__u64 __arena last;
__u64 __arena *__arena shared_page;

SEC("syscall")
int atomic_setup(void *ctx)
{
	if (!shared_page)
		shared_page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	return shared_page ? 0 : -1;
}

SEC("syscall")
int atomic_hammer(struct hammer_args *args)
{
	__u64 __arena *page = shared_page;
	__u64 cpu_bit = 1ULL << (bpf_get_smp_processor_id() & 63);
	__u32 n = args->times;
	__u64 seen = 0;
	int i;

	if (!page || n > 1000000)
		return -1;
	bpf_for(i, 0, n) {
		__u64 old;

		__sync_fetch_and_add(&add64, 1);
		seen |= __sync_fetch_and_add(&add32, 2) & 1;
		do {
			old = cas64;
		} while (__sync_val_compare_and_swap(&cas64, old, old + 1) != old && can_loop);
		__sync_fetch_and_add(page, 3);
		seen |= __sync_fetch_and_or(&or_cpus, cpu_bit);
		__sync_lock_test_and_set(&last, i);
	}
	args->seen = seen;
	return 0;
}

SEC("syscall")
int atomic_read(struct atomic_totals *t)
{
	t->add64 = add64;
	t->add32 = add32;
	t->cas64 = cas64;
	t->page = shared_page ? *shared_page : 0;
	t->or_cpus = or_cpus;
	t->last = last;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
