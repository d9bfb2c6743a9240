/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bpf_arena.h — BPF arenas (BPF_MAP_TYPE_ARENA) the way the kernel's
 * selftests write them (tools/testing/selftests/bpf/bpf_arena_common.h),
 * for Debian's clang 19 and its pre-arena UAPI and libbpf headers.
 *
 * An arena is a sparse region of up to 4 GiB shared by programs and the
 * host; a pointer into it (`__arena`, address space 1) is an ordinary
 * 64-bit host address. Programs get pages with bpf_arena_alloc_pages() and
 * give them back with bpf_arena_free_pages(); reading a page that was never
 * allocated gives 0 and writing it does nothing, as in the kernel.
 *
 *     struct {
 *             __uint(type, BPF_MAP_TYPE_ARENA);
 *             __uint(map_flags, BPF_F_MMAPABLE);
 *             __uint(max_entries, 16);            // pages
 *     } arena SEC(".maps");
 *
 *     struct node __arena *n = bpf_arena_alloc_pages(&arena, NULL, 1,
 *                                                    NUMA_NO_NODE, 0);
 *     int __arena counter;                        // a global in the arena
 *
 * With clang 18+ (__BPF_FEATURE_ADDR_SPACE_CAST) `__arena` is address
 * space 1 and the compiler emits the casts itself: cast_kern before each
 * access through an arena pointer, cast_user where a generic pointer
 * becomes an arena one. Older compilers see `__arena` as nothing: globals
 * then go to `.addr_space.1` by section attribute and the program calls
 * cast_kern()/cast_user() itself before using a pointer.
 *
 * In bpfvisor the guest maps the arena at the host's address, so both casts
 * give full 64-bit addresses (Note [Arena pointers] in guest-jit).
 */
#ifndef BPF_ARENA_H
#define BPF_ARENA_H

#include "bpfvisor.h"

/* enum bpf_map_type and map_flags bits Debian 12's linux/bpf.h predates. */
#ifndef BPF_MAP_TYPE_ARENA
#define BPF_MAP_TYPE_ARENA 33
#endif
/* Host touches of pages no program allocated fail instead of allocating. */
#ifndef BPF_F_SEGV_ON_FAULT
#define BPF_F_SEGV_ON_FAULT (1U << 17)
#endif
/* cast_user keeps only the low 32 bits (pointers are offsets). */
#ifndef BPF_F_NO_USER_CONV
#define BPF_F_NO_USER_CONV (1U << 18)
#endif

#ifndef NUMA_NO_NODE
#define NUMA_NO_NODE (-1)
#endif

#ifndef PAGE_SIZE
#define PAGE_SIZE 4096
#endif

/* Largest arena: 4 GiB of pages (the kernel's limit on max_entries). */
#define ARENA_MAX_PAGES (1U << 20)

#ifndef __arg_arena
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))
#endif

#if defined(__BPF_FEATURE_ADDR_SPACE_CAST) && !defined(BPF_ARENA_FORCE_ASM)
#define __arena __attribute__((address_space(1)))
#define __arena_global __attribute__((address_space(1)))
/* The compiler emits both casts itself. */
#define cast_kern(ptr) /* nop: emitted by LLVM */
#define cast_user(ptr) /* nop: emitted by LLVM */
#else
#define __arena
#define __arena_global SEC(".addr_space.1")
/*
 * addr_space_cast: BPF_ALU64 | BPF_MOV | BPF_X with off 1 and
 * imm = dst_as << 16 | src_as, the register cast in place.
 */
#define bpf_addr_space_cast(var, dst_as, src_as)                        \
	asm volatile("%[reg] = addr_space_cast(%[reg], " #dst_as ", " #src_as ")" \
		     : [reg] "+r"(var))
#define cast_kern(ptr) bpf_addr_space_cast(ptr, 0, 1)
#define cast_user(ptr) bpf_addr_space_cast(ptr, 1, 0)
#endif

/*
 * can_loop: true until the may_goto budget of the frame runs out, as the
 * kernel's bpf_experimental.h defines it; bounds loops the kernel's
 * verifier cannot (walking a list of unknown length).
 */
#ifndef can_loop
#define can_loop ({ __label__ l_break, l_continue;				_Bool ret = 1;								asm volatile goto("may_goto %l[l_break]" :::: l_break);		goto l_continue;							l_break: ret = 0;							l_continue:;								ret; })
#endif

/*
 * The kernel's arena kfuncs (kernel/bpf/arena.c), provided by bpfvisor's
 * guest runtime with the same signatures and results.
 *
 * bpf_arena_alloc_pages: page_cnt zeroed pages, contiguous, anywhere free
 * (addr NULL) or exactly at addr; node_id is ignored; flags must be 0.
 * Returns their address, or NULL.
 * bpf_arena_free_pages: gives back page_cnt pages at ptr; later reads give
 * 0 and writes are dropped.
 * bpf_arena_reserve_pages: keeps page_cnt free pages at addr from being
 * allocated (0), or -EBUSY if one is in use.
 */
void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt,
				    int node_id, __u64 flags) __weak __ksym;
void bpf_arena_free_pages(void *map, void __arena *ptr, __u32 page_cnt) __weak __ksym;
int bpf_arena_reserve_pages(void *map, void __arena *addr, __u32 page_cnt) __weak __ksym;

#endif /* BPF_ARENA_H */
