// SPDX-License-Identifier: Apache-2.0
/*
 * The ring buffer rows of `bpfvisor bench`: each run reserves, fills and
 * submits `records` 8-byte records into a 512 KiB RINGBUF, as the kernel's
 * own ring buffer benchmark does, while a host thread consumes them. The
 * same object runs in the VM and in the host kernel (as XDP, under
 * BPF_PROG_TEST_RUN), and the host consumer is the same code for both.
 *
 * The loop is a bpf_loop so the kernel's verifier accepts it. A reserve
 * that finds the ring full is retried on the next iteration (counted in
 * `full`); the loop stops when `records` are produced or after 8M
 * iterations. Each run adds what it produced to `produced`, which the host
 * reads to know how many records to wait for.
 */
#include "bpfvisor.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);
} rb SEC(".maps");

/* Records per run, and the commit flags (BPF_RB_NO_WAKEUP: the consumer
 * spins, so the rows measure the ring, not the wakeup path). */
__u64 records = 65536;
__u64 commit_flags = BPF_RB_NO_WAKEUP;

__u64 produced;
__u64 full;

struct state {
	__u64 produced;
	__u64 full;
};

static long produce_one(__u64 i, struct state *s)
{
	__u64 *r = bpf_ringbuf_reserve(&rb, 8, 0);

	if (!r) {
		s->full++;
		return 0;
	}
	*r = s->produced;
	bpf_ringbuf_submit(r, commit_flags);
	s->produced++;
	return s->produced >= records;
}

SEC("xdp")
int produce(void *ctx)
{
	struct state s = { 0, 0 };

	bpf_loop(1 << 23, produce_one, &s, 0);
	__sync_fetch_and_add(&produced, s.produced);
	__sync_fetch_and_add(&full, s.full);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
