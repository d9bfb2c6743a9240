// SPDX-License-Identifier: Apache-2.0
/*
 * matmul: the product of two 32 x 32 matrices of u32 (arithmetic modulo
 * 2^32), row by row, without storing it: 32768 multiply-adds.
 *
 * result = sum over i, j of (32 i + j + 1) * C[i][j], as a u64.
 */
#include "bench.h"

#define MAT_N 32
#define MAT_A_SEED 3
#define MAT_B_SEED 4

const __u32 mat_a[MAT_N * MAT_N] = { BENCH_REP1024(BENCH_GEN, MAT_A_SEED, 0) };
const __u32 mat_b[MAT_N * MAT_N] = { BENCH_REP1024(BENCH_GEN, MAT_B_SEED, 0) };

__u64 result;

SEC("xdp")
int matmul(struct xdp_md *ctx)
{
	__u64 sum = 0;

	for (__u32 i = 0; i < MAT_N; i++) {
		for (__u32 j = 0; j < MAT_N; j++) {
			__u32 c = 0;

			for (__u32 k = 0; k < MAT_N; k++)
				c += mat_a[i * MAT_N + k] * mat_b[k * MAT_N + j];
			sum += (__u64)(i * MAT_N + j + 1) * c;
		}
	}
	result = sum;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
