#!/usr/bin/env bash
# Build the guest runtime rt.wasm from the C sources in this folder.
#
#   bash wasm_guests/rt/build.sh [OUT]     (default OUT: rt.wasm next to this script)
#   RT_CFLAGS=-DRT_DEBUG bash wasm_guests/rt/build.sh OUT   a debug build (the tests build one):
#       freed memory is poisoned and every value an rt export receives is checked
#
# Deterministic: the same sources and toolchain give the same bytes (sources
# are compiled in C-locale order, no debug info, no paths embedded), so CI can
# rebuild and compare with the committed rt.wasm. Fails loudly (non-zero exit,
# message on stderr) when clang/wasm-ld is missing or anything does not build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/rt.wasm}"
out_dir="$(dirname "$out")"
[ -d "$out_dir" ] || { echo "build.sh: output folder $out_dir does not exist" >&2; exit 1; }
out="$(cd "$out_dir" && pwd)/$(basename "$out")"

CLANG="${CLANG:-clang}"
if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "build.sh: '$CLANG' not found; install clang and lld (apt-get install -y clang lld)" >&2
    exit 1
fi

STACK_SIZE=262144        # 256 KiB C stack, first in memory: an overflow traps
INITIAL_MEMORY=393216    # 6 pages: the C stack, rt's data, then the first heap pages

cd "$here"
srcs=()
while IFS= read -r f; do srcs+=("$f"); done < <(LC_ALL=C ls -1 -- *.c)

tmp="$(mktemp "$out.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$CLANG" --target=wasm32 -std=c11 -O2 -Wall -Wextra -Werror \
    -mmultivalue -mbulk-memory -Xclang -target-abi -Xclang experimental-mv \
    -nostdlib -ffreestanding -fno-ident \
    -Wl,--no-entry -Wl,--import-table -Wl,--stack-first \
    -Wl,-z,stack-size=$STACK_SIZE -Wl,--initial-memory=$INITIAL_MEMORY \
    ${RT_CFLAGS:-} -o "$tmp" "${srcs[@]}"
mv -f "$tmp" "$out"
trap - EXIT
