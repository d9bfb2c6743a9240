// SPDX-License-Identifier: Apache-2.0
/*
 * An open-hashing table (separate chaining) in an arena, shared with the
 * host both ways.
 *
 * The table is `hash_buckets`, HASH_BUCKETS __arena pointers in the
 * arena's globals; bucket b holds the chain of entries whose key hashes to
 * b = (key * 0x9E3779B97F4A7C15) >> (64 - HASH_BITS), newest first. An
 * entry is { next, key, value } (24 bytes), carved from 16-page chunks the
 * program allocates. The host can look a key up with plain dereferences:
 * hash, then walk `next` from hash_buckets[b].
 *
 * hash_fill: the context is a struct hash_args; inserts keys 1..n (n =
 * args->n, at most 1 << 20) with value key * 3 + 1 (an existing key's value
 * is replaced) and returns the number of new keys; args->value is the
 * number of entries in the table after it. n = 5000 on a new sandbox:
 * returns 5000, and each key k in 1..5000 maps to 3k + 1.
 *
 * hash_lookup: args->key in; returns 1 and sets args->value if the key is
 * there, else returns 0. After hash_fill(5000): key 4321 -> 1, value
 * 12964; key 5001 -> 0.
 *
 * hash_ingest: the other direction. The host writes host_count (at most
 * HOST_KEYS) keys into host_keys[] (both __arena globals); the program
 * inserts each with value key + 1 and returns the sum of the keys it read;
 * args->value is the number of new keys. Keys the table already holds are
 * updated, not added.
 */
#include "bpf_arena.h"

#define HASH_BITS 10
#define HASH_BUCKETS (1 << HASH_BITS)
#define HOST_KEYS 1024
#define ENTRY_CHUNK_PAGES 16

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4096);	/* 16 MiB */
} arena SEC(".maps");

struct hash_entry {
	struct hash_entry __arena *next;
	__u64 key;
	__u64 value;
};

struct hash_args {
	__u32 n;		/* in (hash_fill) */
	__u32 pad;
	__u64 key;		/* in (hash_lookup) */
	__u64 value;		/* out */
};

struct hash_entry __arena *__arena hash_buckets[HASH_BUCKETS];
__u64 __arena hash_count;
__u32 __arena host_count;
__u64 __arena host_keys[HOST_KEYS];

static char __arena *chunk_next;
static char __arena *chunk_end;

static __always_inline __u32 hash_bucket(__u64 key)
{
	return (key * 0x9E3779B97F4A7C15ULL) >> (64 - HASH_BITS);
}

static struct hash_entry __arena *entry_alloc(void)
{
	struct hash_entry __arena *e;

	if (chunk_end - chunk_next < (long)sizeof(*e)) {
		chunk_next = bpf_arena_alloc_pages(&arena, NULL, ENTRY_CHUNK_PAGES,
						   NUMA_NO_NODE, 0);
		if (!chunk_next)
			return NULL;
		chunk_end = chunk_next + ENTRY_CHUNK_PAGES * PAGE_SIZE;
	}
	e = (struct hash_entry __arena *)chunk_next;
	chunk_next += sizeof(*e);
	return e;
}

static struct hash_entry __arena *hash_find(__u64 key)
{
	struct hash_entry __arena *e;

	for (e = hash_buckets[hash_bucket(key)]; e && can_loop; e = e->next)
		if (e->key == key)
			return e;
	return NULL;
}

/* 1 if added, 0 if updated, -1 if out of memory. */
static int hash_put(__u64 key, __u64 value)
{
	struct hash_entry __arena *e = hash_find(key);
	__u32 b = hash_bucket(key);

	if (e) {
		e->value = value;
		return 0;
	}
	e = entry_alloc();
	if (!e)
		return -1;
	e->key = key;
	e->value = value;
	e->next = hash_buckets[b];
	hash_buckets[b] = e;
	hash_count++;
	return 1;
}

SEC("syscall")
int hash_fill(struct hash_args *args)
{
	int i, added = 0, r;

	if (args->n > 1 << 20)
		return -1;
	bpf_for(i, 0, args->n) {
		__u64 key = i + 1;

		r = hash_put(key, key * 3 + 1);
		if (r < 0)
			return -1;
		added += r;
	}
	args->value = hash_count;
	return added;
}

SEC("syscall")
int hash_lookup(struct hash_args *args)
{
	struct hash_entry __arena *e = hash_find(args->key);

	if (!e)
		return 0;
	args->value = e->value;
	return 1;
}

SEC("syscall")
long hash_ingest(struct hash_args *args)
{
	__u32 n = host_count;
	long sum = 0;
	int i, added = 0, r;

	if (n > HOST_KEYS)
		n = HOST_KEYS;
	bpf_for(i, 0, n) {
		__u64 key = host_keys[i];

		r = hash_put(key, key + 1);
		if (r < 0)
			return -1;
		added += r;
		sum += key;
	}
	args->value = added;
	return sum;
}

char LICENSE[] SEC("license") = "GPL";
