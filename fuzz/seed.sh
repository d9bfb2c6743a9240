#!/bin/sh
# Fills fuzz/corpus/ with seeds (not committed): the sample objects for
# `loader`; the conformance suite's `-- asm` sections for `asm`, each after
# a space (an even first byte selects text mode).
#
# Usage: fuzz/seed.sh   (CONFORMANCE=DIR to use another copy of the suite)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
suite=${CONFORMANCE:-$root/../shared/conformance}

mkdir -p "$here/corpus/loader" "$here/corpus/asm"
cp "$root"/images/progs/*.bpf.o "$here/corpus/loader/"
for data in "$suite"/tests/*.data "$suite"/negative/*.data; do
	name=$(basename "$data" .data)
	{
		printf ' '
		awk '/^-- / { on = ($0 == "-- asm"); next } on' "$data"
	} >"$here/corpus/asm/$name"
done
echo "seeded $(ls "$here/corpus/loader" | wc -l) loader and $(ls "$here/corpus/asm" | wc -l) asm inputs"
