/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bpfvisor.h — what bpfvisor programs need beyond Debian's libbpf headers.
 *
 * Debian 12 ships a linux/bpf.h and a libbpf (1.1) that predate arenas and
 * some newer conveniences; this header fills the gaps the samples use and
 * stays small. Include it instead of <linux/bpf.h> + <bpf/bpf_helpers.h>.
 */
#ifndef BPFVISOR_H
#define BPFVISOR_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/*
 * The context bpfvisor hands a program: r1 points at a writable copy of the
 * caller's bytes (r2 holds their length, which C code cannot name portably;
 * programs that need it take it from their own header in the data).
 */
typedef void bpfvisor_ctx;

/*
 * kfuncs bpfvisor provides (the guest runtime exports each under its name).
 * Declared as the kernel's selftests do (bpf_experimental.h): weak, in
 * .ksyms, so that clang emits a call relocated against the name.
 */
#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif

/* Linux 6.4 added the numeric iterator to the UAPI header; Debian's 6.1
 * lacks it. Eight opaque bytes on the program's stack. */
struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __weak __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __weak __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __weak __ksym;

/*
 * Iterating CPUs. bpfvisor_nr_cpus(): the number of vCPUs, fixed for the
 * sandbox's life; a bpf_for bound. (Kernel programs get it from a
 * `const volatile __u32 nr_cpus` the loader sets; that works here too, set
 * with Object::set_variable.) The kernel's bit iterator (Linux 6.11,
 * kernel/bpf/helpers.c) walks the set bits of nr_words u64 words at
 * unsafe_ptr, read fault-safe: a CPU mask is one word, bit i = vCPU i.
 * bpf_iter_bits_new returns 0, -EINVAL (NULL, no words), -E2BIG (more than
 * 511 words) or -EFAULT (unreadable mask); next points at the bit's index.
 */
extern __u32 bpfvisor_nr_cpus(void) __weak __ksym;

struct bpf_iter_bits {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

extern int bpf_iter_bits_new(struct bpf_iter_bits *it, const __u64 *unsafe_ptr__ign,
			     __u32 nr_words) __weak __ksym;
extern int *bpf_iter_bits_next(struct bpf_iter_bits *it) __weak __ksym;
extern void bpf_iter_bits_destroy(struct bpf_iter_bits *it) __weak __ksym;

extern void bpf_rcu_read_lock(void) __weak __ksym;
extern void bpf_rcu_read_unlock(void) __weak __ksym;
extern void bpf_preempt_disable(void) __weak __ksym;
extern void bpf_preempt_enable(void) __weak __ksym;

/*
 * bpf_for(i, start, end): `for (i = start; i < end; i++)` through the
 * numeric iterator; bpf_repeat(n): n iterations. As libbpf 1.2's
 * bpf_helpers.h defines them (libbpf 1.1 has neither): the iterator lives
 * in the loop's scope and is destroyed when the loop ends.
 */
#ifndef bpf_for
#define bpf_for(i, start, end) for (						\
	struct bpf_iter_num ___it __attribute__((aligned(8),			\
						 cleanup(bpf_iter_num_destroy))), \
	/* ___p only makes bpf_iter_num_new() run once; the cast keeps	\
	 * clang emitting BTF for the destructor used by cleanup() */	\
			    *___p __attribute__((unused)) = (		\
				bpf_iter_num_new(&___it, (start), (end)),	\
				(void)bpf_iter_num_destroy, (void *)0);	\
	({								\
		int *___t = bpf_iter_num_next(&___it);			\
		(___t && ((i) = *___t, (i) >= (start) && (i) < (end)));	\
	});								\
)
#endif

#ifndef bpf_repeat
#define bpf_repeat(N) for (						\
	struct bpf_iter_num ___it __attribute__((aligned(8),			\
						 cleanup(bpf_iter_num_destroy))), \
			    *___p __attribute__((unused)) = (		\
				bpf_iter_num_new(&___it, 0, (N)),		\
				(void)bpf_iter_num_destroy, (void *)0);	\
	bpf_iter_num_next(&___it);					\
)
#endif

/*
 * bpf_for_each(type, cur, args...): loops with the open-coded iterator
 * bpf_iter_<type>, `cur` pointing at each value, as libbpf 1.2 defines it:
 * bpf_for_each(bits, cpu, &mask, 1) visits each set bit of `mask`.
 */
#ifndef bpf_for_each
#define bpf_for_each(type, cur, args...) for (				\
	struct bpf_iter_##type ___it __attribute__((aligned(8),		\
						    cleanup(bpf_iter_##type##_destroy))), \
			       *___p __attribute__((unused)) = (		\
				bpf_iter_##type##_new(&___it, ##args),		\
				(void)bpf_iter_##type##_destroy, (void *)0);	\
	(((cur) = bpf_iter_##type##_next(&___it)));			\
)
#endif

/* Keep the compiler from proving a value constant or folding a load away. */
#define BPFVISOR_OPAQUE(x) ({ __typeof__(x) __v = (x); asm volatile("" : "+r"(__v)); __v; })

#endif /* BPFVISOR_H */
