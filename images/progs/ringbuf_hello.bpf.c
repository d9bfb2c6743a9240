// SPDX-License-Identifier: Apache-2.0
/*
 * Small ring buffer records whose bytes are known, for `bpfvisor run`'s
 * ring buffer output (cli/tests/ringbuf.rs, docs/cli.md).
 *
 * `events` and `logs` are 4 KiB RINGBUFs.
 *
 * hello: submits "hello", "ring" and "buffer" (no NULs) to `events`, the
 * first two through bpf_ringbuf_output, the last reserved and submitted;
 * returns 3.
 *
 * count: the context is a struct span {first, count}; submits `count`
 * (at most 1000) 8-byte records {seq, cpu} to `events`, seq = first ..
 * first + count - 1 and cpu the vCPU's index, both little-endian __u32;
 * a reserve that fails (the ring holds 256 of them) is skipped. Returns
 * how many were submitted.
 *
 * trap: submits "before the trap" to `events`, then reads address 0 and
 * traps (a page fault): the record stays in the ring.
 *
 * corrupt: submits "ok" to `events` and "intact" to `logs`, then submits
 * "bad" to `events` and overwrites the length in that record's header (the
 * 8 bytes before the sample) with 0x00ffffff, as a hostile program can:
 * the host's consumer reads "ok", then finds a record longer than what was
 * produced (an error for `events`; `logs` is unaffected). Returns 0.
 *
 * misalign: on a fresh `events` (run it first), reserves "lost" in it and
 * sets its producer position (0x2000 bytes from the ring's start, the
 * data at 0x3000: 0x1008 bytes before this first sample) to 17, which is
 * not a multiple of 8, before submitting it, so that no consumer, however
 * quick, reads "lost": the host's consumer reports the ring corrupt every
 * time it looks. Then submits "still here" to `logs`. Returns 0.
 */
#include "bpfvisor.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} logs SEC(".maps");

struct span {
	__u32 first;
	__u32 count;
};

struct seq_rec {
	__u32 seq;
	__u32 cpu;
};

SEC("syscall")
int hello(void *ctx)
{
	char *r;

	bpf_ringbuf_output(&events, "hello", 5, 0);
	bpf_ringbuf_output(&events, "ring", 4, 0);
	r = bpf_ringbuf_reserve(&events, 6, 0);
	if (!r)
		return -1;
	__builtin_memcpy(r, "buffer", 6);
	bpf_ringbuf_submit(r, 0);
	return 3;
}

SEC("syscall")
int count(struct span *s)
{
	__u32 first = s->first, n = s->count, sent = 0;

	for (__u32 i = 0; i < n && i < 1000; i++) {
		struct seq_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

		if (!r)
			continue;
		r->seq = first + i;
		r->cpu = bpf_get_smp_processor_id();
		bpf_ringbuf_submit(r, 0);
		sent++;
	}
	return sent;
}

SEC("syscall")
int trap(void *ctx)
{
	int *p = BPFVISOR_OPAQUE((int *)0);

	bpf_ringbuf_output(&events, "before the trap", 15, 0);
	return *p;
}

SEC("syscall")
int corrupt(void *ctx)
{
	char *r;

	bpf_ringbuf_output(&events, "ok", 2, 0);
	bpf_ringbuf_output(&logs, "intact", 6, 0);
	r = bpf_ringbuf_reserve(&events, 3, 0);
	if (!r)
		return -1;
	__builtin_memcpy(r, "bad", 3);
	bpf_ringbuf_submit(r, 0);
	/* The record's header: its length, then its page offset. */
	*(volatile __u32 *)BPFVISOR_OPAQUE(r - 8) = 0x00ffffff;
	return 0;
}

SEC("syscall")
int misalign(void *ctx)
{
	char *r = bpf_ringbuf_reserve(&events, 4, 0);

	if (!r)
		return -1;
	__builtin_memcpy(r, "lost", 4);
	*(volatile __u64 *)BPFVISOR_OPAQUE(r - 0x1008) = 17;
	bpf_ringbuf_submit(r, 0);
	bpf_ringbuf_output(&logs, "still here", 10, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
