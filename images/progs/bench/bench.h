/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench.h — what the benchmark programs of `bpfvisor bench` share
 * (bench/src/suite.rs lists them).
 *
 * Every program is an XDP program that ignores its context: it reads its
 * inputs from global data, writes a checksum to the global `result` and
 * returns XDP_PASS, so that each engine (bpfvisor's VM, its interpreter,
 * the kernel's BPF_PROG_TEST_RUN, rbpf, native Rust) runs the same thing
 * and must end with the same `result`, however many runs came before.
 *
 * Inputs are arrays the preprocessor fills from a stateless generator,
 * BENCH_GEN(seed, i); bench/src/native.rs computes the same values, and a
 * test checks them against these objects' data.
 */
#ifndef BENCH_H
#define BENCH_H

#include "bpfvisor.h"

#ifndef XDP_PASS
#define XDP_PASS 2
#endif

/*
 * The generator: murmur3's 32-bit finaliser over i * golden ratio + seed.
 * Each step is its own macro so that the argument is expanded a few times
 * only.
 */
#define BENCH_MIX1(h) ((__u32)((__u32)(h) ^ ((__u32)(h) >> 16)) * 0x85ebca6bu)
#define BENCH_MIX2(h) ((__u32)((__u32)(h) ^ ((__u32)(h) >> 13)) * 0xc2b2ae35u)
#define BENCH_MIX3(h) ((__u32)((__u32)(h) ^ ((__u32)(h) >> 16)))
#define BENCH_GEN(seed, i) \
	BENCH_MIX3(BENCH_MIX2(BENCH_MIX1((__u32)(i) * 0x9e3779b9u + (__u32)(seed))))
#define BENCH_BYTE(seed, i) ((__u8)BENCH_GEN(seed, i))

/* Initialisers of N generated elements: M(seed, base), M(seed, base + 1), ... */
#define BENCH_REP4(M, s, b) M(s, (b)), M(s, (b) + 1), M(s, (b) + 2), M(s, (b) + 3)
#define BENCH_REP16(M, s, b) BENCH_REP4(M, s, b), BENCH_REP4(M, s, (b) + 4), \
	BENCH_REP4(M, s, (b) + 8), BENCH_REP4(M, s, (b) + 12)
#define BENCH_REP64(M, s, b) BENCH_REP16(M, s, b), BENCH_REP16(M, s, (b) + 16), \
	BENCH_REP16(M, s, (b) + 32), BENCH_REP16(M, s, (b) + 48)
#define BENCH_REP256(M, s, b) BENCH_REP64(M, s, b), BENCH_REP64(M, s, (b) + 64), \
	BENCH_REP64(M, s, (b) + 128), BENCH_REP64(M, s, (b) + 192)
#define BENCH_REP1024(M, s, b) BENCH_REP256(M, s, b), BENCH_REP256(M, s, (b) + 256), \
	BENCH_REP256(M, s, (b) + 512), BENCH_REP256(M, s, (b) + 768)
#define BENCH_REP4096(M, s, b) BENCH_REP1024(M, s, b), BENCH_REP1024(M, s, (b) + 1024), \
	BENCH_REP1024(M, s, (b) + 2048), BENCH_REP1024(M, s, (b) + 3072)

/* FNV-1a, 64-bit. */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

#endif /* BENCH_H */
