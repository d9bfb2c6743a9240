// SPDX-License-Identifier: Apache-2.0
/* The smallest useful program: one trace line, one return value. */
#include "bpfvisor.h"

SEC("syscall")
int hello(void *ctx)
{
	int answer = 42;

	bpf_printk("Hello from bpfvisor, answer=%d", answer);
	return answer;
}

char LICENSE[] SEC("license") = "GPL";
