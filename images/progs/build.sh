#!/bin/sh
# Rebuilds the sample BPF objects next to their sources.
#
# The objects are committed so that building and testing bpfvisor needs no
# clang; run this after changing a source (needs: apt-get install clang-19
# libbpf-dev). Usage: images/progs/build.sh [file.bpf.c ...]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
include=$(cd "$here/../include" && pwd)
clang=${CLANG:-clang-19}

cd "$here"
if [ "$#" -eq 0 ]; then
	set -- *.bpf.c
fi
for src in "$@"; do
	src=$(basename "$src")
	obj=${src%.c}.o
	echo "  CLANG-BPF $obj"
	# clang writes the source's absolute path into BTF line info; the
	# prefix map leaves just `hello.bpf.c`, so the objects are the same
	# wherever the tree is checked out (it changes no code).
	"$clang" --target=bpf -O2 -g -mcpu=v4 \
		-I/usr/include/x86_64-linux-gnu -I"$include" \
		-fdebug-prefix-map="$here"= \
		-c "$src" -o "$obj"
done
