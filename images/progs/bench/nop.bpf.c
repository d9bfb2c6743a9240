// SPDX-License-Identifier: Apache-2.0
/*
 * The invocation rows of `bpfvisor bench`: a program that does nothing,
 * so a run's time is the engine's cost of calling it (host to program and
 * back) and nothing else.
 */
#include "bpfvisor.h"

SEC("xdp")
int nop(void *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
