// SPDX-License-Identifier: Apache-2.0
/*
 * Dynptrs (struct bpf_dynptr) over program memory: the helpers
 * bpf_dynptr_from_mem, _read, _write, _data and the kfuncs
 * bpf_dynptr_adjust, _is_null, _is_rdonly, _size, _clone, _slice,
 * _slice_rdwr, as the kernel defines them (kernel/bpf/helpers.c). Each
 * program fills its context with one __s64 per call it makes, in the
 * order below, and returns 0. Errors: -E2BIG = -7, -EINVAL = -22,
 * -ERANGE = -34, -EFAULT = -14; NULL_SIZE = 4294967274 (bpf_dynptr_size
 * of a NULL dynptr: -EINVAL as a __u32). A pointer a call returns is
 * reported as its offset from the start of buf (or of the map value), or
 * -1 for NULL.
 *
 * dynptr_rw: a local dynptr over the 64-byte global buf.
 *   from_mem 0, size 64, is_null 0, is_rdonly 0,
 *   write "dynptr!\0" at 8 -> 0, read it back -> 0, the bytes read as a
 *   little-endian u64 = 0x0021727470796e64 ("dynptr!\0"),
 *   read 0 bytes at 64 -> 0, read 8 at 60 -> -E2BIG, read 0 at 65 ->
 *   -E2BIG, read len 0xffffffff at 0 -> -E2BIG, read with flags 1 ->
 *   -EINVAL, write 8 at 57 -> -E2BIG, write with flags 1 -> -EINVAL,
 *   write 8 at 57 with flags 1 -> -E2BIG (range before flags),
 *   buf[8..16] after the run as a u64 = 0x0021727470796e64.
 *
 * dynptr_null: dynptrs left NULL by failed constructors.
 *   from_mem of 1 << 24 bytes -> -E2BIG, is_null 1,
 *   from_mem with flags 1 over a dynptr that was valid -> -EINVAL,
 *   is_null 1, size NULL_SIZE, is_rdonly 0, read -> -EINVAL, write ->
 *   -EINVAL, data -1, slice -1, slice_rdwr -1, adjust(0, 0) -> -EINVAL,
 *   clone into a valid dynptr -> -EINVAL, the clone's is_null 1,
 *   from_mem of 0 bytes -> 0, its is_null 0, size 0, read 0 at 0 -> 0,
 *   read 1 at 0 -> -E2BIG.
 *
 * dynptr_views: buf[i] = i, then d over buf (64 bytes):
 *   clone d to c -> 0, adjust c to 16..32 -> 0, size c 16, size d 64,
 *   read 8 at 0 of c -> 0, the bytes as a u64 = 0x1716151413121110,
 *   slice(c, 4, NULL, 4) at 20, slice(c, 13, NULL, 4) -1,
 *   slice_rdwr(c, 0, NULL, 1) at 16, a 0xaa stored through it read back
 *   through d at 16 = 0xaa (one byte),
 *   adjust c (4, 2) -> -EINVAL, adjust c (0, 17) -> -ERANGE (c unchanged:
 *   size 16), adjust c (16, 16) -> 0, then size c 0,
 *   data(d, 60, 4) at 60, data(d, 61, 4) -1,
 *   write(d, 1, buf, 8) (overlapping, as memmove) -> 0, buf[0..8] as a u64
 *   = 0x0605040302010000, read(buf, 8, d, 1) -> 0, buf[0..8] as a u64 =
 *   0x0706050403020100.
 *
 * dynptr_map: a local dynptr over values[0] (struct value, 48 bytes: six
 * u64 words w[0..6]); the caller sets the value first.
 *   lookup: 0 (found), from_mem 0, size 48, read 8 at 0 -> 0, the u64 read
 *   (w[0] as the caller set it), write 0x1122334455667788 at 8 -> 0,
 *   data(d, 40, 8) at 40 (offset in the value); the program adds 1 to w[5]
 *   through it; adjust(16, 40) -> 0, size 24, write 4 bytes 0xcc at 0 ->
 *   0, write 1 byte at 24 -> -E2BIG. After the run: w[1] =
 *   0x1122334455667788, w[5] = its old value + 1, bytes 16..20 = 0xcc,
 *   everything else as the caller set it.
 *
 * dynptr_rdonly: the kernel makes read-only dynptrs (for read-only skbs,
 * user ring buffer samples); here no verifier stops a program from setting
 * bit 31 of the size word itself, which drives the same checks. Over buf,
 * 16 bytes, then the bit set:
 *   is_rdonly 1, write 1 at 0 -> -EINVAL, write 99 at 0 -> -EINVAL
 *   (read-only before range), read 8 at 0 -> 0, data(0, 1) -1,
 *   slice(8, 4) at 8, slice_rdwr(8, 4) -1, clone -> 0, the clone's
 *   is_rdonly 1, adjust the clone (2, 6) -> 0, its is_rdonly 1, size 4.
 *
 * dynptr_hostile: the context's first u64 is an address that faults (the
 * caller picks it); the rest are the results. Nothing here may trap:
 *   with the address as the dynptr pointer: from_mem -> -EFAULT, read ->
 *   -EFAULT, write -> -EFAULT, data -1 (NULL), slice -1, adjust ->
 *   -EFAULT, is_null 1, is_rdonly 0, size NULL_SIZE, clone -> -EFAULT and
 *   the clone's is_null 1; clone of a good dynptr to the address ->
 *   -EFAULT;
 *   a local dynptr of 64 bytes whose data the program forged to the
 *   address: read -> -EFAULT, write -> -EFAULT, data(4, 4) = the address
 *   + 4 (computed, not touched: reported as a raw value, not an offset);
 *   a good dynptr read into the address -> -EFAULT, written from the
 *   address -> -EFAULT;
 *   a dynptr over buf forged to kind 3 (skb, which a sandbox lacks): read
 *   -> -EINVAL, data -1; forged to kind 7 (no such kind): read -> -EFAULT,
 *   write -> -EFAULT.
 */
#include "bpfvisor.h"
#include <stdbool.h>

/* Kernel dynptr kfuncs (Linux 6.4-6.5), declared as bpf_experimental.h
 * and the kernel selftests' bpf_kfuncs.h do. */
extern int bpf_dynptr_adjust(const struct bpf_dynptr *p, __u32 start, __u32 end) __weak __ksym;
extern bool bpf_dynptr_is_null(const struct bpf_dynptr *p) __weak __ksym;
extern bool bpf_dynptr_is_rdonly(const struct bpf_dynptr *p) __weak __ksym;
extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __weak __ksym;
extern int bpf_dynptr_clone(const struct bpf_dynptr *p, struct bpf_dynptr *clone__uninit) __weak __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *p, __u32 offset, void *buffer__opt,
			      __u32 buffer__szk) __weak __ksym;
extern void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *p, __u32 offset, void *buffer__opt,
				   __u32 buffer__szk) __weak __ksym;

/* struct bpf_dynptr_kern: what the 16 opaque bytes hold. */
struct dynptr_kern {
	__u64 data;
	__u32 size;	/* bits 0-23 size, 28-30 kind, 31 read-only */
	__u32 offset;
};

#define DYNPTR_RDONLY_BIT (1U << 31)
#define DYNPTR_TYPE_SHIFT 28

char buf[64];

struct value {
	__u64 w[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct value);
} values SEC(".maps");

/* A pointer as an offset from `base`, -1 for NULL. */
#define OFF(p, base) ((p) ? (__s64)((char *)(p) - (char *)(base)) : -1)

static __always_inline __s64 u64_at(const void *p)
{
	__u64 v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

SEC("syscall")
int dynptr_rw(__s64 *out)
{
	char msg[8] = "dynptr!";
	char back[8] = {};
	struct bpf_dynptr d;
	int i = 0;

	out[i++] = bpf_dynptr_from_mem(buf, sizeof(buf), 0, &d);
	out[i++] = bpf_dynptr_size(&d);
	out[i++] = bpf_dynptr_is_null(&d);
	out[i++] = bpf_dynptr_is_rdonly(&d);
	out[i++] = bpf_dynptr_write(&d, 8, msg, sizeof(msg), 0);
	out[i++] = bpf_dynptr_read(back, sizeof(back), &d, 8, 0);
	out[i++] = u64_at(back);
	out[i++] = bpf_dynptr_read(back, 0, &d, 64, 0);
	out[i++] = bpf_dynptr_read(back, 8, &d, 60, 0);
	out[i++] = bpf_dynptr_read(back, 0, &d, 65, 0);
	out[i++] = bpf_dynptr_read(back, BPFVISOR_OPAQUE(0xffffffffU), &d, 0, 0);
	out[i++] = bpf_dynptr_read(back, 8, &d, 0, 1);
	out[i++] = bpf_dynptr_write(&d, 57, msg, 8, 0);
	out[i++] = bpf_dynptr_write(&d, 0, msg, 8, 1);
	out[i++] = bpf_dynptr_write(&d, 57, msg, 8, 1);
	out[i++] = u64_at(&buf[8]);
	return 0;
}

SEC("syscall")
int dynptr_null(__s64 *out)
{
	struct bpf_dynptr d, c;
	char tmp[8];
	int i = 0;

	out[i++] = bpf_dynptr_from_mem(buf, BPFVISOR_OPAQUE(1U << 24), 0, &d);
	out[i++] = bpf_dynptr_is_null(&d);
	bpf_dynptr_from_mem(buf, 8, 0, &d);
	out[i++] = bpf_dynptr_from_mem(buf, 8, BPFVISOR_OPAQUE(1), &d);
	out[i++] = bpf_dynptr_is_null(&d);
	out[i++] = bpf_dynptr_size(&d);
	out[i++] = bpf_dynptr_is_rdonly(&d);
	out[i++] = bpf_dynptr_read(tmp, sizeof(tmp), &d, 0, 0);
	out[i++] = bpf_dynptr_write(&d, 0, tmp, sizeof(tmp), 0);
	out[i++] = OFF(bpf_dynptr_data(&d, 0, 0), buf);
	out[i++] = OFF(bpf_dynptr_slice(&d, 0, NULL, 0), buf);
	out[i++] = OFF(bpf_dynptr_slice_rdwr(&d, 0, NULL, 0), buf);
	out[i++] = bpf_dynptr_adjust(&d, 0, 0);
	bpf_dynptr_from_mem(buf, 8, 0, &c);
	out[i++] = bpf_dynptr_clone(&d, &c);
	out[i++] = bpf_dynptr_is_null(&c);
	out[i++] = bpf_dynptr_from_mem(buf, 0, 0, &d);
	out[i++] = bpf_dynptr_is_null(&d);
	out[i++] = bpf_dynptr_size(&d);
	out[i++] = bpf_dynptr_read(tmp, 0, &d, 0, 0);
	out[i++] = bpf_dynptr_read(tmp, 1, &d, 0, 0);
	return 0;
}

SEC("syscall")
int dynptr_views(__s64 *out)
{
	struct bpf_dynptr d, c;
	char tmp[8];
	__u8 *p;
	int i = 0;

	for (int k = 0; k < sizeof(buf); k++)
		buf[k] = k;
	bpf_dynptr_from_mem(buf, sizeof(buf), 0, &d);
	out[i++] = bpf_dynptr_clone(&d, &c);
	out[i++] = bpf_dynptr_adjust(&c, 16, 32);
	out[i++] = bpf_dynptr_size(&c);
	out[i++] = bpf_dynptr_size(&d);
	out[i++] = bpf_dynptr_read(tmp, sizeof(tmp), &c, 0, 0);
	out[i++] = u64_at(tmp);
	out[i++] = OFF(bpf_dynptr_slice(&c, 4, NULL, 4), buf);
	out[i++] = OFF(bpf_dynptr_slice(&c, 13, NULL, 4), buf);
	p = bpf_dynptr_slice_rdwr(&c, 0, NULL, 1);
	out[i++] = OFF(p, buf);
	if (p)
		*p = 0xaa;
	tmp[0] = 0;
	bpf_dynptr_read(tmp, 1, &d, 16, 0);
	out[i++] = (__u8)tmp[0];
	out[i++] = bpf_dynptr_adjust(&c, 4, 2);
	out[i++] = bpf_dynptr_adjust(&c, 0, 17);
	out[i++] = bpf_dynptr_size(&c);
	out[i++] = bpf_dynptr_adjust(&c, 16, 16);
	out[i++] = bpf_dynptr_size(&c);
	out[i++] = OFF(bpf_dynptr_data(&d, 60, 4), buf);
	out[i++] = OFF(bpf_dynptr_data(&d, 61, 4), buf);
	out[i++] = bpf_dynptr_write(&d, 1, buf, 8, 0);
	out[i++] = u64_at(buf);
	out[i++] = bpf_dynptr_read(buf, 8, &d, 1, 0);
	out[i++] = u64_at(buf);
	return 0;
}

SEC("syscall")
int dynptr_map(__s64 *out)
{
	__u64 word = 0x1122334455667788ULL;
	__u8 cc[4] = { 0xcc, 0xcc, 0xcc, 0xcc };
	struct bpf_dynptr d;
	struct value *v;
	__u64 first = 0;
	__u32 key = 0;
	__u64 *w5;
	int i = 0;

	v = bpf_map_lookup_elem(&values, &key);
	out[i++] = v ? 0 : -1;
	if (!v)
		return 0;
	out[i++] = bpf_dynptr_from_mem(v, sizeof(*v), 0, &d);
	out[i++] = bpf_dynptr_size(&d);
	out[i++] = bpf_dynptr_read(&first, sizeof(first), &d, 0, 0);
	out[i++] = first;
	out[i++] = bpf_dynptr_write(&d, 8, &word, sizeof(word), 0);
	w5 = bpf_dynptr_data(&d, 40, 8);
	out[i++] = OFF(w5, v);
	if (w5)
		*w5 += 1;
	out[i++] = bpf_dynptr_adjust(&d, 16, 40);
	out[i++] = bpf_dynptr_size(&d);
	out[i++] = bpf_dynptr_write(&d, 0, cc, sizeof(cc), 0);
	out[i++] = bpf_dynptr_write(&d, 24, cc, 1, 0);
	return 0;
}

SEC("syscall")
int dynptr_rdonly(__s64 *out)
{
	struct bpf_dynptr d, c;
	char tmp[8];
	int i = 0;

	bpf_dynptr_from_mem(buf, 16, 0, &d);
	((struct dynptr_kern *)&d)->size |= DYNPTR_RDONLY_BIT;
	out[i++] = bpf_dynptr_is_rdonly(&d);
	out[i++] = bpf_dynptr_write(&d, 0, tmp, 1, 0);
	out[i++] = bpf_dynptr_write(&d, 0, tmp, 99, 0);
	out[i++] = bpf_dynptr_read(tmp, sizeof(tmp), &d, 0, 0);
	out[i++] = OFF(bpf_dynptr_data(&d, 0, 1), buf);
	out[i++] = OFF(bpf_dynptr_slice(&d, 8, NULL, 4), buf);
	out[i++] = OFF(bpf_dynptr_slice_rdwr(&d, 8, NULL, 4), buf);
	out[i++] = bpf_dynptr_clone(&d, &c);
	out[i++] = bpf_dynptr_is_rdonly(&c);
	out[i++] = bpf_dynptr_adjust(&c, 2, 6);
	out[i++] = bpf_dynptr_is_rdonly(&c);
	out[i++] = bpf_dynptr_size(&c);
	return 0;
}

SEC("syscall")
int dynptr_hostile(__s64 *out)
{
	struct bpf_dynptr *bad = (struct bpf_dynptr *)out[0];
	struct bpf_dynptr d, c, forged;
	struct dynptr_kern *k = (struct dynptr_kern *)&forged;
	char tmp[8] = {};
	int i = 1;

	out[i++] = bpf_dynptr_from_mem(buf, 8, 0, bad);
	out[i++] = bpf_dynptr_read(tmp, 8, bad, 0, 0);
	out[i++] = bpf_dynptr_write(bad, 0, tmp, 8, 0);
	out[i++] = OFF(bpf_dynptr_data(bad, 0, 0), buf);
	out[i++] = OFF(bpf_dynptr_slice(bad, 0, NULL, 0), buf);
	out[i++] = bpf_dynptr_adjust(bad, 0, 0);
	out[i++] = bpf_dynptr_is_null(bad);
	out[i++] = bpf_dynptr_is_rdonly(bad);
	out[i++] = bpf_dynptr_size(bad);
	bpf_dynptr_from_mem(buf, 8, 0, &c);
	out[i++] = bpf_dynptr_clone(bad, &c);
	out[i++] = bpf_dynptr_is_null(&c);
	bpf_dynptr_from_mem(buf, 8, 0, &d);
	out[i++] = bpf_dynptr_clone(&d, bad);

	bpf_dynptr_from_mem(buf, sizeof(buf), 0, &forged);
	k->data = (__u64)bad;
	out[i++] = bpf_dynptr_read(tmp, 8, &forged, 0, 0);
	out[i++] = bpf_dynptr_write(&forged, 0, tmp, 8, 0);
	out[i++] = (__s64)bpf_dynptr_data(&forged, 4, 4);
	out[i++] = bpf_dynptr_read(bad, 8, &d, 0, 0);
	out[i++] = bpf_dynptr_write(&d, 0, bad, 8, 0);

	bpf_dynptr_from_mem(buf, sizeof(buf), 0, &forged);
	k->size = (k->size & ~(7U << DYNPTR_TYPE_SHIFT)) | (3U << DYNPTR_TYPE_SHIFT);
	out[i++] = bpf_dynptr_read(tmp, 8, &forged, 0, 0);
	out[i++] = OFF(bpf_dynptr_data(&forged, 0, 8), buf);
	k->size |= 7U << DYNPTR_TYPE_SHIFT;
	out[i++] = bpf_dynptr_read(tmp, 8, &forged, 0, 0);
	out[i++] = bpf_dynptr_write(&forged, 0, tmp, 8, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
