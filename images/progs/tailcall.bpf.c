// SPDX-License-Identifier: Apache-2.0
/*
 * Tail calls through a PROG_ARRAY whose slots are filled from the object
 * (`.values`), as libbpf fills them.
 *
 * chain: the context is a struct chain (zeroed by the caller). `chain`
 * appends 1 to `trace` and tail-calls slot 0 (`second`), which appends 2
 * and tail-calls slot 1 (`third`), which appends 3 and tail-calls slot 3,
 * which is empty: the call falls through, `third` appends 99 and returns
 * `n`. Result: trace = {1, 2, 3, 99}, n = 4, returns 4.
 *
 * forever: increments `n` and tail-calls itself (slot 2) until the
 * kernel's limit of 33 tail calls stops it, then returns `n`: 34 runs in
 * all (n = 34 with a zeroed context).
 */
#include "bpfvisor.h"

struct chain {
	__u32 n;
	__u32 trace[7];
};

int second(struct chain *c);
int third(struct chain *c);
int forever(struct chain *c);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (struct chain *));
} jump SEC(".maps") = {
	.values = {
		[0] = (void *)&second,
		[1] = (void *)&third,
		[2] = (void *)&forever,
	},
};

static void append(struct chain *c, __u32 v)
{
	__u32 n = c->n;

	if (n < 7)
		c->trace[n] = v;
	c->n = n + 1;
}

SEC("syscall")
int chain(struct chain *c)
{
	append(c, 1);
	bpf_tail_call(c, &jump, 0);
	return -1;
}

SEC("syscall")
int second(struct chain *c)
{
	append(c, 2);
	bpf_tail_call(c, &jump, 1);
	return -2;
}

SEC("syscall")
int third(struct chain *c)
{
	append(c, 3);
	bpf_tail_call(c, &jump, 3);
	append(c, 99);
	return c->n;
}

SEC("syscall")
int forever(struct chain *c)
{
	c->n++;
	bpf_tail_call(c, &jump, 2);
	return c->n;
}

char LICENSE[] SEC("license") = "GPL";
