// SPDX-License-Identifier: Apache-2.0
/*
 * bpf-to-bpf calls: subprograms stay out of line (__noinline) in .text and
 * are shared by several programs, some of them in the same section.
 */
#include "bpfvisor.h"

static __noinline __u64 square(__u64 x)
{
	return x * x;
}

static __noinline __u64 sum_of_squares(__u64 a, __u64 b)
{
	return square(a) + square(b);
}

/* A global (non-static) function: the kernel verifies it on its own. */
__noinline __u64 gcd(__u64 a, __u64 b)
{
	while (b) {
		__u64 t = a % b;

		a = b;
		b = t;
	}
	return a;
}

struct pair {
	__u64 a;
	__u64 b;
};

SEC("syscall")
int pythagoras(struct pair *p)
{
	/* 3*3 + 4*4 = 25 with the default bytes. */
	return sum_of_squares(p->a, p->b);
}

SEC("syscall")
int common_divisor(struct pair *p)
{
	return gcd(p->a, p->b);
}

SEC("socket")
int both(struct pair *p)
{
	return sum_of_squares(p->a, p->b) + gcd(p->a, p->b);
}

char LICENSE[] SEC("license") = "GPL";
