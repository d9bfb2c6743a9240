// SPDX-License-Identifier: Apache-2.0
/*
 * Never returns: the kernel's verifier would refuse the unbounded loop;
 * bpfvisor runs it until the deadline stops it.
 */
#include "bpfvisor.h"

SEC("syscall")
int spin(void *ctx)
{
	volatile __u64 n = 0;

	for (;;)
		n++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
