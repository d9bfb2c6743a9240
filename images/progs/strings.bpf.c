// SPDX-License-Identifier: Apache-2.0
/*
 * bpf_snprintf (through libbpf's BPF_SNPRINTF), bpf_strncmp, and the
 * fault-safe reads bpf_probe_read_kernel(_str), with their results left in
 * the context for the caller to check.
 */
#include "bpfvisor.h"

struct strings_args {
	__u64 number;		/* in: formatted by snprintf */
	__u64 bad_ptr;		/* in: an address probe reads fail on */
	char name[16];		/* in: compared with "bpfvisor" */
	char text[64];		/* out: snprintf's text */
	__s64 snprintf_ret;	/* out */
	__s64 strncmp_ret;	/* out */
	__s64 read_ret;		/* out: probe_read_kernel of `name` */
	__s64 read_str_ret;	/* out: probe_read_kernel_str of `name` */
	__s64 bad_read_ret;	/* out: probe_read_kernel of bad_ptr */
	char copy[16];		/* out: what probe_read_kernel_str copied */
	__u64 zeroed;		/* out: 8 bytes after a failed read (0) */
};

SEC("syscall")
int strings(struct strings_args *args)
{
	char local[16];
	__u64 after_fault = ~0ULL;

	args->snprintf_ret = BPF_SNPRINTF(args->text, sizeof(args->text),
					  "n=%llu hex=%llx name=%s", args->number,
					  args->number, args->name);
	args->strncmp_ret = bpf_strncmp(args->name, sizeof(args->name), "bpfvisor");
	args->read_ret = bpf_probe_read_kernel(local, sizeof(local), args->name);
	args->read_str_ret = bpf_probe_read_kernel_str(args->copy, sizeof(args->copy), local);
	args->bad_read_ret = bpf_probe_read_kernel(&after_fault, sizeof(after_fault),
						   (void *)args->bad_ptr);
	args->zeroed = after_fault;
	bpf_printk("%s", args->text);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
