// SPDX-License-Identifier: Apache-2.0
/*
 * Loop-heavy compute kernels for benchmarks and JIT-vs-interpreter checks.
 *
 * The kernel's verifier would give up on these (the loops are bounded only by
 * data it cannot see); bpfvisor runs them and a deadline bounds them.
 */
#include "bpfvisor.h"

#define SIEVE_MAX (1 << 16)

struct sieve_args {
	__u32 limit;	/* in: count primes below this (at most SIEVE_MAX) */
	__u32 count;	/* out: how many there are */
};

/* One byte per number: 1 when composite. Lives in .bss. */
static __u8 composite[SIEVE_MAX];

SEC("syscall")
int sieve(struct sieve_args *args)
{
	__u32 limit = args->limit;
	__u32 count = 0;

	if (limit > SIEVE_MAX)
		limit = SIEVE_MAX;
	/* volatile: clang would turn this loop into memset, which BPF lacks */
	for (__u32 i = 0; i < limit; i++)
		((volatile __u8 *)composite)[i & (SIEVE_MAX - 1)] = 0;
	for (__u32 i = 2; i < limit; i++) {
		if (composite[i & (SIEVE_MAX - 1)])
			continue;
		count++;
		for (__u64 j = (__u64)i * i; j < limit; j += i)
			composite[j & (SIEVE_MAX - 1)] = 1;
	}
	args->count = count;
	return count;
}

struct hash_args {
	__u32 len;	/* in: bytes of data to hash */
	__u32 rounds;	/* in: how many times to hash them */
	__u64 hash;	/* out: FNV-1a 64 */
	__u8 data[4096];
};

SEC("syscall")
int fnv1a(struct hash_args *args)
{
	__u32 len = args->len;
	__u32 rounds = args->rounds;
	__u64 hash = 0xcbf29ce484222325ULL;

	if (len > sizeof(args->data))
		len = sizeof(args->data);
	for (__u32 r = 0; r < rounds; r++) {
		for (__u32 i = 0; i < len; i++) {
			hash ^= args->data[i & (sizeof(args->data) - 1)];
			hash *= 0x100000001b3ULL;
		}
	}
	args->hash = hash;
	return (int)(hash ^ (hash >> 32));
}

char LICENSE[] SEC("license") = "GPL";
