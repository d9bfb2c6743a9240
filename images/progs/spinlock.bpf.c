// SPDX-License-Identifier: Apache-2.0
/*
 * A counter in an ARRAY value guarded by a struct bpf_spin_lock, for runs
 * on several vCPUs at once.
 *
 * locked_add: the context is a __u32 `times`; increments the counter
 * `times` times, each time under the lock with a plain (non-atomic)
 * read-modify-write that loses updates without the lock. Returns the
 * value it last wrote. After 4 vCPUs each run it with times = t, r times,
 * all at once, the counter is exactly 4 * t * r.
 *
 * locked_read: returns the counter (read under the lock).
 */
#include "bpfvisor.h"

struct locked {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct locked);
} counter SEC(".maps");

SEC("syscall")
int locked_add(__u32 *times)
{
	__u32 zero = 0, n = *times;
	struct locked *v = bpf_map_lookup_elem(&counter, &zero);
	__u64 last = 0;

	if (!v)
		return -1;
	for (__u32 i = 0; i < n; i++) {
		bpf_spin_lock(&v->lock);
		/* volatile: one load and one store, as racy as can be. */
		last = *(volatile __u64 *)&v->count + 1;
		*(volatile __u64 *)&v->count = last;
		bpf_spin_unlock(&v->lock);
	}
	return last;
}

SEC("syscall")
int locked_read(void *ctx)
{
	__u32 zero = 0;
	struct locked *v = bpf_map_lookup_elem(&counter, &zero);
	__u64 count;

	if (!v)
		return -1;
	bpf_spin_lock(&v->lock);
	count = v->count;
	bpf_spin_unlock(&v->lock);
	return count;
}

char LICENSE[] SEC("license") = "GPL";
