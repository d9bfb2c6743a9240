// SPDX-License-Identifier: Apache-2.0
/*
 * Word counts in a HASH map.
 *
 * count_words: the context is a struct text: `len`, then `len` bytes of
 * text (at most TEXT_MAX). Words are runs of bytes other than space, tab
 * and newline. Each word, cut to its first 15 bytes and zero-padded to 16
 * (struct word), is a key of `counts`; its value is incremented (so counts
 * add up over runs). Returns the number of words in the text. On a new
 * sandbox, "the cat and the hat and the bat" returns 8 and leaves 5 keys:
 * the=3, and=2, cat=1, hat=1, bat=1.
 *
 * word_count: the context is a struct word; returns its count, 0 when the
 * word is not in the map.
 */
#include "bpfvisor.h"

#define WORD_MAX 16
#define TEXT_MAX 4096

struct word {
	char s[WORD_MAX];
};

struct text {
	__u32 len;
	char bytes[TEXT_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct word);
	__type(value, __u64);
} counts SEC(".maps");

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

static void count(struct word *w)
{
	__u64 one = 1;
	__u64 *n = bpf_map_lookup_elem(&counts, w);

	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	/* Another CPU may insert the word between the lookup and here. */
	if (bpf_map_update_elem(&counts, w, &one, BPF_NOEXIST) == 0)
		return;
	n = bpf_map_lookup_elem(&counts, w);
	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("syscall")
int count_words(struct text *t)
{
	__u32 len = t->len;
	struct word w = {};
	__u32 n = 0, words = 0;

	if (len > TEXT_MAX)
		len = TEXT_MAX;
	for (__u32 i = 0; i <= len; i++) {
		char c = i < len ? t->bytes[i & (TEXT_MAX - 1)] : ' ';

		if (!is_space(c)) {
			if (n < WORD_MAX - 1)
				w.s[n] = c;
			n++;
			continue;
		}
		if (n) {
			count(&w);
			words++;
			__builtin_memset(&w, 0, sizeof(w));
			n = 0;
		}
	}
	return words;
}

SEC("syscall")
int word_count(struct word *w)
{
	__u64 *n = bpf_map_lookup_elem(&counts, w);

	return n ? *n : 0;
}

char LICENSE[] SEC("license") = "GPL";
