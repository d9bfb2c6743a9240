// SPDX-License-Identifier: Apache-2.0
/*
 * An LRU_HASH that evicts: `recent` holds at most 4 entries.
 *
 * lru_fill: the context is a struct lru_args. Inserts keys 1..n in order
 * (n at most 63; value = key * 10); right after inserting key
 * `touch_after`, looks up key `touch` (0: no lookup), which makes `touch`
 * recently used. Then looks up keys 1..n: `present` gets bit k for each
 * key k found (with the right value), `count` their number, `failures`
 * the updates that failed (an LRU map evicts instead of failing). Returns
 * `count`.
 *
 * On a new sandbox, n = 6, touch_after = 4, touch = 1: keys 2 and 3 are the
 * least recently used when 5 and 6 arrive, so a strict LRU policy keeps
 * {1, 4, 5, 6}: present = 0x72, count = 4, failures = 0. Any LRU (the
 * kernel's is approximate) keeps the newest key, 6, holds at most 4 keys
 * and evicts rather than fails: present has bit 6, count <= 4,
 * failures = 0.
 */
#include "bpfvisor.h"

#define LRU_MAX 4

struct lru_args {
	__u32 n;		/* in */
	__u32 touch_after;	/* in */
	__u32 touch;		/* in */
	__u32 count;		/* out */
	__u32 failures;		/* out */
	__u32 pad;
	__u64 present;		/* out: bit k set when key k is in the map */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LRU_MAX);
	__type(key, __u32);
	__type(value, __u64);
} recent SEC(".maps");

SEC("syscall")
int lru_fill(struct lru_args *a)
{
	__u32 n = a->n, touch = a->touch;

	if (n > 63)
		n = 63;
	a->count = 0;
	a->failures = 0;
	a->present = 0;
	for (__u32 k = 1; k <= n; k++) {
		__u64 v = k * 10;

		if (bpf_map_update_elem(&recent, &k, &v, BPF_ANY))
			a->failures++;
		if (k == a->touch_after && touch)
			bpf_map_lookup_elem(&recent, &touch);
	}
	for (__u32 k = 1; k <= n; k++) {
		__u64 *v = bpf_map_lookup_elem(&recent, &k);

		if (v && *v == k * 10) {
			a->present |= 1ULL << k;
			a->count++;
		}
	}
	return a->count;
}

char LICENSE[] SEC("license") = "GPL";
