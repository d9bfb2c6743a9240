#!/bin/sh
# Rebuilds the sample BPF objects next to their sources.
#
# The objects are committed so that building and testing bpfvisor needs no
# clang; run this after changing a source (needs: apt-get install clang-19
# libbpf-dev). Usage: images/progs/build.sh [file.bpf.c ...]: every source
# here and in bench/ by default; a file is looked for where it is given,
# else relative to images/progs (`build.sh bench/sort.bpf.c`).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
include=$(cd "$here/../include" && pwd)
clang=${CLANG:-clang-19}

if [ "$#" -eq 0 ]; then
	set -- "$here"/*.bpf.c "$here"/bench/*.bpf.c
fi
for src in "$@"; do
	if [ -f "$src" ]; then
		src=$(cd "$(dirname "$src")" && pwd)/$(basename "$src")
	else
		src=$here/$src
	fi
	# The path below images/progs: `hello.bpf.c`, `bench/sort.bpf.c`.
	src=${src#"$here"/}
	obj=${src%.c}.o
	echo "  CLANG-BPF $obj"
	# clang writes the source's absolute path into BTF line info; the
	# prefix map leaves just `hello.bpf.c`, so the objects are the same
	# wherever the tree is checked out (it changes no code).
	(cd "$here" && "$clang" --target=bpf -O2 -g -mcpu=v4 \
		-I/usr/include/x86_64-linux-gnu -I"$include" \
		-fdebug-prefix-map="$here"= \
		-c "$src" -o "$obj")
done
