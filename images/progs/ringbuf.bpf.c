// SPDX-License-Identifier: Apache-2.0
/*
 * Ring buffer producers, for the host's consumer (tests/tests/ringbuf.rs).
 *
 * `events` is a 16 KiB RINGBUF. Every record starts with a struct rec
 * header {seq, len, cpu}, then `len - 12` bytes where byte j is
 * (seq + j) & 0xff.
 *
 * varied: the context is a struct batch {first, count}. Produces records
 * seq = first .. first + count - 1 of length 12 + (seq * 37) % 300,
 * discarding those with seq % 7 == 3 and submitting the others; a reserve
 * that fails counts in `dropped`. Returns the number submitted.
 *
 * fill: reserves 64-byte records (seq counting from `next_seq`) until the
 * context's __u32 `attempts` are used, never consuming: `produced` counts
 * the records submitted, `dropped` the reserves that returned NULL.
 * Returns the number produced by this run.
 *
 * output: as varied but through bpf_ringbuf_output from a stack buffer of
 * 64-byte records, count from the context's __u32; returns the number
 * copied (-EAGAIN results count in `dropped`).
 *
 * query: stores bpf_ringbuf_query of AVAIL_DATA, RING_SIZE, CONS_POS and
 * PROD_POS into `queried[0..4]` and returns 0.
 *
 * burst: the context is a __u32 `count`; produces `count` 16-byte records
 * {seq (per CPU), cpu, magic 0x600d}, spinning (bounded) while the ring is
 * full, and returns how many it had to drop after 1M failed tries. Each
 * vCPU counts its records in `per_cpu_sent[cpu]`.
 *
 * stall: reserves a 64-byte record and then spins until `release` is
 * non-zero (never, unless the host sets it): run with a deadline, it leaves
 * a reserved record that no one will commit. Returns 0.
 *
 * scribble: hostile. The context is a __u32 `rounds`; each round reserves
 * an 8-byte record, finds the ring's start from the record (as the kernel
 * does, through pg_off), writes a random u64 at a random 8-byte offset of
 * the ring's 44 KiB (header page, positions, data, data again) and submits
 * the record. Returns the number of rounds whose reserve succeeded.
 */
#include "bpfvisor.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024);
} events SEC(".maps");

struct rec {
	__u32 seq;
	__u32 len;
	__u32 cpu;
};

struct batch {
	__u32 first;
	__u32 count;
};

__u64 dropped;
__u64 produced;
__u32 next_seq;
__u64 queried[4];
__u64 per_cpu_sent[64];

static __always_inline void fill_payload(__u8 *p, __u32 seq, __u32 len)
{
	for (__u32 j = 0; j < len && j < 512; j++)
		p[j] = (seq + j) & 0xff;
}

SEC("syscall")
int varied(struct batch *b)
{
	__u32 first = b->first, count = b->count, sent = 0;

	for (__u32 i = 0; i < count && i < 10000; i++) {
		__u32 seq = first + i;
		__u32 len = 12 + (seq * 37) % 300;
		struct rec *r = bpf_ringbuf_reserve(&events, len, 0);

		if (!r) {
			__sync_fetch_and_add(&dropped, 1);
			continue;
		}
		r->seq = seq;
		r->len = len;
		r->cpu = bpf_get_smp_processor_id();
		fill_payload((__u8 *)(r + 1), seq, len - sizeof(*r));
		if (seq % 7 == 3) {
			bpf_ringbuf_discard(r, 0);
		} else {
			bpf_ringbuf_submit(r, 0);
			sent++;
		}
	}
	return sent;
}

SEC("syscall")
int fill(__u32 *attempts)
{
	__u32 n = *attempts, made = 0;

	for (__u32 i = 0; i < n && i < 100000; i++) {
		struct rec *r = bpf_ringbuf_reserve(&events, 64, 0);

		if (!r) {
			__sync_fetch_and_add(&dropped, 1);
			continue;
		}
		r->seq = next_seq++;
		r->len = 64;
		r->cpu = bpf_get_smp_processor_id();
		fill_payload((__u8 *)(r + 1), r->seq, 64 - sizeof(*r));
		bpf_ringbuf_submit(r, 0);
		made++;
	}
	produced += made;
	return made;
}

SEC("syscall")
int output(__u32 *count)
{
	__u8 buf[64];
	struct rec *r = (struct rec *)buf;
	__u32 n = *count, copied = 0;

	for (__u32 i = 0; i < n && i < 100000; i++) {
		r->seq = next_seq++;
		r->len = sizeof(buf);
		r->cpu = bpf_get_smp_processor_id();
		fill_payload(buf + sizeof(*r), r->seq, sizeof(buf) - sizeof(*r));
		if (bpf_ringbuf_output(&events, buf, sizeof(buf), 0) == 0)
			copied++;
		else
			__sync_fetch_and_add(&dropped, 1);
	}
	return copied;
}

SEC("syscall")
int query(void *ctx)
{
	queried[0] = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	queried[1] = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	queried[2] = bpf_ringbuf_query(&events, BPF_RB_CONS_POS);
	queried[3] = bpf_ringbuf_query(&events, BPF_RB_PROD_POS);
	return 0;
}

struct burst_rec {
	__u32 seq;
	__u32 cpu;
	__u64 magic;
};

SEC("syscall")
int burst(__u32 *count)
{
	__u32 cpu = bpf_get_smp_processor_id() & 63, n = *count, lost = 0;

	for (__u32 i = 0; i < n && i < 10000000; i++) {
		struct burst_rec *r = 0;

		for (__u32 t = 0; t < 1000000 && !r; t++)
			r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
		if (!r) {
			lost++;
			continue;
		}
		r->seq = per_cpu_sent[cpu]++;
		r->cpu = cpu;
		r->magic = 0x600d;
		bpf_ringbuf_submit(r, 0);
	}
	return lost;
}

volatile __u32 release;

SEC("syscall")
int stall(void *ctx)
{
	struct rec *r = bpf_ringbuf_reserve(&events, 64, 0);

	while (!release)
		;
	if (r)
		bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("syscall")
int scribble(__u32 *rounds)
{
	__u32 n = *rounds, reserved = 0;
	__u64 base = 0;

	for (__u32 i = 0; i < n && i < 1000000; i++) {
		__u64 *r = bpf_ringbuf_reserve(&events, 8, 0);

		if (r) {
			__u32 pg_off = ((__u32 *)r)[-1];

			base = ((__u64)r & ~4095ULL) - (__u64)pg_off * 4096;
			reserved++;
		}
		if (base) {
			__u64 span = 3 * 4096 + 2 * 16 * 1024;
			__u64 off = (bpf_get_prandom_u32() % (span / 8)) * 8;
			__u64 val = ((__u64)bpf_get_prandom_u32() << 32) |
				    bpf_get_prandom_u32();

			/* Small values now and then: plausible lengths and
			 * positions get further into the consumer. */
			if (val & 1)
				val &= 0x7fff;
			*(volatile __u64 *)(base + off) = val;
		}
		if (r)
			bpf_ringbuf_submit(r, 0);
	}
	return reserved;
}

char LICENSE[] SEC("license") = "GPL";
