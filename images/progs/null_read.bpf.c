// SPDX-License-Identifier: Apache-2.0
/* Reads through a NULL pointer so that traps can be reported with file:line. */
#include "bpfvisor.h"

SEC("syscall")
int null_read(void *ctx)
{
	int *p = BPFVISOR_OPAQUE((int *)0);

	return *p; /* NULL read: the trap names this line */
}

char LICENSE[] SEC("license") = "GPL";
