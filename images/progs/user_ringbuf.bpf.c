// SPDX-License-Identifier: Apache-2.0
/*
 * Requests in, responses out: the host produces requests into the
 * USER_RINGBUF `requests`, a program drains them and answers each through
 * the RINGBUF `responses` — how a serverless host passes work into a
 * sandbox with no VM exit per request (tests/tests/ringbuf.rs).
 *
 * A request is {__u32 seq; __u32 len; then len - 8 payload bytes}, at most
 * 256 bytes in all. The response is {__u32 seq; __u32 len; __u64 sum}: the
 * request's seq and length and the sum of its payload bytes.
 *
 * serve: the context is a __u32 `limit` (0: no limit); drains requests,
 * answering each, stopping after `limit` of them. Returns what
 * bpf_user_ringbuf_drain returned. Counters: `served`, `malformed`
 * (requests shorter than 8 bytes or longer than 256, or whose len field
 * disagrees with the sample's size), `unanswered` (no room for the
 * response; the request is still consumed).
 *
 * serve_dynptr: as serve, but answers through bpf_ringbuf_reserve_dynptr /
 * bpf_dynptr_write / bpf_ringbuf_submit_dynptr, and reads the payload
 * with bpf_dynptr_data. Returns what the drain returned.
 */
#include "bpfvisor.h"

extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __weak __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 16 * 1024);
} requests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024);
} responses SEC(".maps");

struct request {
	__u32 seq;
	__u32 len;
	__u8 payload[248];
};

struct response {
	__u32 seq;
	__u32 len;
	__u64 sum;
};

struct serve_ctx {
	__u32 limit;
	__u32 seen;
};

__u64 served;
__u64 malformed;
__u64 unanswered;

static long answer(struct bpf_dynptr *dynptr, void *data)
{
	struct serve_ctx *ctx = data;
	struct request req;
	struct response *resp;
	__u32 size = bpf_dynptr_size(dynptr);
	__u64 sum = 0;

	ctx->seen++;
	if (size < 8 || size > sizeof(req) ||
	    bpf_dynptr_read(&req, size & 0x1ff, dynptr, 0, 0) ||
	    req.len != size) {
		malformed++;
		goto out;
	}
	for (__u32 i = 0; i < size - 8 && i < sizeof(req.payload); i++)
		sum += req.payload[i];
	resp = bpf_ringbuf_reserve(&responses, sizeof(*resp), 0);
	if (!resp) {
		unanswered++;
		goto out;
	}
	resp->seq = req.seq;
	resp->len = req.len;
	resp->sum = sum;
	bpf_ringbuf_submit(resp, 0);
	served++;
out:
	return ctx->limit && ctx->seen >= ctx->limit;
}

SEC("syscall")
int serve(__u32 *limit)
{
	struct serve_ctx ctx = { .limit = *limit };

	return bpf_user_ringbuf_drain(&requests, answer, &ctx, 0);
}

static long answer_dynptr(struct bpf_dynptr *dynptr, void *data)
{
	struct serve_ctx *ctx = data;
	struct bpf_dynptr out;
	struct response resp = {};
	__u32 size = bpf_dynptr_size(dynptr);
	__u32 *head = bpf_dynptr_data(dynptr, 0, 8);

	ctx->seen++;
	if (!head || size > sizeof(struct request) || head[1] != size) {
		malformed++;
		goto out;
	}
	resp.seq = head[0];
	resp.len = head[1];
	for (__u32 i = 8; i < size && i < sizeof(struct request); i++) {
		__u8 *b = bpf_dynptr_data(dynptr, i, 1);

		if (b)
			resp.sum += *b;
	}
	if (bpf_ringbuf_reserve_dynptr(&responses, sizeof(resp), 0, &out)) {
		bpf_ringbuf_discard_dynptr(&out, 0);
		unanswered++;
		goto out;
	}
	bpf_dynptr_write(&out, 0, &resp, sizeof(resp), 0);
	bpf_ringbuf_submit_dynptr(&out, 0);
	served++;
out:
	return ctx->limit && ctx->seen >= ctx->limit;
}

SEC("syscall")
int serve_dynptr(__u32 *limit)
{
	struct serve_ctx ctx = { .limit = *limit };

	return bpf_user_ringbuf_drain(&requests, answer_dynptr, &ctx, 0);
}

char LICENSE[] SEC("license") = "GPL";
