#!/bin/sh
# Rebuild the tiny guest boot sector from boot.S with GNU binutils.
#
#   sh build.sh [OUTPUT]        (default: tinyguest.img next to this script)
#
# binutils is used rather than nasm because it is present wherever a Go
# toolchain with cgo support is. The result is committed and embedded in
# the Go package; guest_test.go checks that this script reproduces it.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/tinyguest.img"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Keep notes out of the flat binary: whether as emits .note.gnu.property,
# or ld a build ID, depends on how binutils was configured. Binutils older
# than 2.31 knows no -mx86-used-note, but then emits no such note either.
as --32 -mx86-used-note=no -o "$tmp/boot.o" "$here/boot.S" 2>/dev/null ||
	as --32 -o "$tmp/boot.o" "$here/boot.S"
ld -m elf_i386 -Ttext 0x7c00 --build-id=none --oformat binary \
	-o "$tmp/tinyguest.img" "$tmp/boot.o"

size=$(wc -c <"$tmp/tinyguest.img")
if [ "$size" -ne 512 ]; then
	echo "build.sh: image is $size bytes, want 512" >&2
	exit 1
fi
chmod 0644 "$tmp/tinyguest.img"
mv "$tmp/tinyguest.img" "$out"
