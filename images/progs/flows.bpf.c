// SPDX-License-Identifier: Apache-2.0
/*
 * Recent flows in an LRU_PERCPU_HASH of 8 entries, updated inside RCU
 * read-side and preemption-disabled sections, as kernel programs do
 * (bpfvisor's bpf_rcu_read_lock/unlock and bpf_preempt_disable/enable
 * are no-ops: a program always runs to its end on its vCPU).
 *
 * flow_seen: the context is a struct flow_args. `remove` 0: increments
 * this CPU's count for `flow` (created at 1), puts it in `hits`, returns
 * 0. `remove` 1: deletes `flow` and returns the helper's result (0, or
 * -ENOENT = -2 when absent). On a new sandbox, flow 1 seen 3 times on
 * vCPU 0 and once on vCPU 1 gives hits 3 then 1, and the map holds
 * flow 1 with values [3, 1]; removing it returns 0, removing it again -2.
 *
 * flow_fill: the context is a __u32 n (at most 64); inserts flows
 * 100..100+n-1 on this CPU, returns the number of updates that failed:
 * 0, since a full LRU map evicts. After n = 20 the map holds at most 8
 * flows, among them the newest, 119.
 */
#include "bpfvisor.h"

struct flow_args {
	__u32 flow;	/* in */
	__u32 remove;	/* in */
	__u64 hits;	/* out */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} flows SEC(".maps");

SEC("syscall")
int flow_seen(struct flow_args *a)
{
	__u64 one = 1;
	__u64 *count;
	int ret = 0;

	bpf_rcu_read_lock();
	bpf_preempt_disable();
	if (a->remove) {
		ret = bpf_map_delete_elem(&flows, &a->flow);
		goto out;
	}
	count = bpf_map_lookup_elem(&flows, &a->flow);
	if (count) {
		*count += 1;
		a->hits = *count;
	} else {
		ret = bpf_map_update_elem(&flows, &a->flow, &one, BPF_NOEXIST);
		a->hits = 1;
	}
out:
	bpf_preempt_enable();
	bpf_rcu_read_unlock();
	return ret;
}

SEC("syscall")
int flow_fill(__u32 *n)
{
	__u32 failures = 0;
	__u32 i;

	for (i = 0; i < *n && i < 64; i++) {
		__u32 flow = 100 + i;
		__u64 one = 1;

		if (bpf_map_update_elem(&flows, &flow, &one, BPF_ANY))
			failures++;
	}
	return failures;
}

char LICENSE[] SEC("license") = "GPL";
