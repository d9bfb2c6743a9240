// SPDX-License-Identifier: Apache-2.0
/*
 * Ring buffer throughput (tests/benches/ringbuf.rs): 8-byte records into a
 * 512 KiB RINGBUF, as the kernel's selftests' ring buffer benchmark.
 *
 * produce: the context is {__u64 count; __u64 flags}; reserves, fills and
 * submits `count` 8-byte records (the value is a per-CPU sequence number),
 * retrying a reserve that finds the ring full (at most 10M times in a row),
 * committing with `flags` (0, BPF_RB_NO_WAKEUP or BPF_RB_FORCE_WAKEUP).
 * Returns the number of failed reserves it retried (0 when the consumer
 * keeps up).
 *
 * output: the same through bpf_ringbuf_output.
 */
#include "bpfvisor.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);
} rb SEC(".maps");

struct args {
	__u64 count;
	__u64 flags;
};

SEC("syscall")
int produce(struct args *a)
{
	__u64 n = a->count, flags = a->flags, retries = 0;

	for (__u64 i = 0; i < n && i < (1ULL << 32); i++) {
		__u64 *r = bpf_ringbuf_reserve(&rb, 8, 0);

		for (__u32 t = 0; !r && t < 10000000; t++) {
			retries++;
			r = bpf_ringbuf_reserve(&rb, 8, 0);
		}
		if (!r)
			return -1;
		*r = i;
		bpf_ringbuf_submit(r, flags);
	}
	return retries;
}

SEC("syscall")
int output(struct args *a)
{
	__u64 n = a->count, flags = a->flags, retries = 0;

	for (__u64 i = 0; i < n && i < (1ULL << 32); i++) {
		__u32 t = 0;

		while (bpf_ringbuf_output(&rb, &i, sizeof(i), flags)) {
			retries++;
			if (++t == 10000000)
				return -1;
		}
	}
	return retries;
}

char LICENSE[] SEC("license") = "GPL";
