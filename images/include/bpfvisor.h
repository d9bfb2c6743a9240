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

/* Keep the compiler from proving a value constant or folding a load away. */
#define BPFVISOR_OPAQUE(x) ({ __typeof__(x) __v = (x); asm volatile("" : "+r"(__v)); __v; })

#endif /* BPFVISOR_H */
