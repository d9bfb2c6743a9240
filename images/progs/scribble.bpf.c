// SPDX-License-Identifier: Apache-2.0
/*
 * A program that scribbles over its own map, as any program can: a lookup
 * returns a pointer into the map's storage, and nothing stops a program
 * from writing past its value into the bookkeeping of its element or of
 * its neighbours. The host's map API must stay bounded and correct (or
 * say Corrupt/Busy) whatever it finds there. Also a churn of updates and
 * deletes, to race with the host.
 *
 * `victim` is a HASH of 64 __u64 values keyed by __u32. `big` (a HASH of
 * 65536) and `big_lru` (an LRU_HASH of 4096), same keys and values, are
 * for the host's tests to fill and corrupt: no program uses them.
 * `secret` (an ARRAY of one __u64, BPF_F_WRONLY) and `feed` (a QUEUE of 4
 * __u32, BPF_F_RDONLY) limit what the host may do, not programs.
 *
 * fill: the context is a __u32 n (at most 64); inserts keys 0..n-1 with
 * value key * 3 + 1. Returns the number of inserts that succeeded: n on a
 * new sandbox.
 *
 * value_addr: the context is a struct addr_args; puts the guest address
 * of `key`'s value in `addr` (0 when absent). Returns 0, -1 when absent.
 *
 * poke: the context is a struct poke_args; writes the __u32 `value` at
 * `offset` bytes from `key`'s value (negative offsets reach the element's
 * header and the buckets before it). Returns 0, -1 when `key` is absent.
 *
 * read_secret: returns secret[0] (0 on a new sandbox).
 *
 * feed_push: the context is a __u32; pushes it on `feed`. Returns 0, or
 * -E2BIG (-7) when `feed` is full.
 *
 * churn: the context is a struct churn_args; `rounds` times, sets key
 * (seed + i) % 64 to key * 3 + 1 and deletes key (seed + i + 32) % 64.
 * Every value ever stored is key * 3 + 1. Returns the number of updates
 * that failed: 0 unless another CPU held a lock too long (never, on a
 * map nobody scribbled on).
 */
#include "bpfvisor.h"

#define VICTIM_MAX 64

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VICTIM_MAX);
	__type(key, __u32);
	__type(value, __u64);
} victim SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u32);
	__type(value, __u64);
} big SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} big_lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_WRONLY);
	__type(key, __u32);
	__type(value, __u64);
} secret SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__uint(map_flags, BPF_F_RDONLY);
	__type(value, __u32);
} feed SEC(".maps");

struct addr_args {
	__u32 key;
	__u32 pad;
	__u64 addr;
};

struct poke_args {
	__u32 key;
	__s32 offset;
	__u32 value;
};

struct churn_args {
	__u32 seed;
	__u32 rounds;
};

SEC("syscall")
int fill(__u32 *n)
{
	__u32 count = *n, ok = 0;

	if (count > VICTIM_MAX)
		count = VICTIM_MAX;
	for (__u32 k = 0; k < count; k++) {
		__u64 v = k * 3 + 1;

		if (bpf_map_update_elem(&victim, &k, &v, BPF_ANY) == 0)
			ok++;
	}
	return ok;
}

SEC("syscall")
int value_addr(struct addr_args *a)
{
	__u64 *v = bpf_map_lookup_elem(&victim, &a->key);

	a->addr = (__u64)v;
	return v ? 0 : -1;
}

SEC("syscall")
int poke(struct poke_args *a)
{
	char *v = bpf_map_lookup_elem(&victim, &a->key);

	if (!v)
		return -1;
	*(volatile __u32 *)(v + a->offset) = a->value;
	return 0;
}

SEC("syscall")
int churn(struct churn_args *a)
{
	__u32 failed = 0, rounds = a->rounds;

	for (__u32 i = 0; i < rounds; i++) {
		__u32 k = (a->seed + i) % VICTIM_MAX;
		__u32 gone = (a->seed + i + VICTIM_MAX / 2) % VICTIM_MAX;
		__u64 v = k * 3 + 1;

		if (bpf_map_update_elem(&victim, &k, &v, BPF_ANY))
			failed++;
		bpf_map_delete_elem(&victim, &gone);
	}
	return failed;
}

SEC("syscall")
int read_secret(void *ctx)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&secret, &zero);

	return v ? *v : -1;
}

SEC("syscall")
int feed_push(__u32 *v)
{
	return bpf_map_push_elem(&feed, v, 0);
}

char LICENSE[] SEC("license") = "GPL";
