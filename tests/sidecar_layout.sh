#!/usr/bin/env bash
# tests/sidecar_layout.sh BINARY LAYOUT: an optimised aviary lays out the code `aviary supervise`
# runs together (docs/architecture.md, "The sidecar's memory"). Fails when the binary has no
# .text.sidecar section, or when fewer than 95 % of the functions the layout lists that the
# binary has are inside it (the linker script no longer reaches them).
set -euo pipefail
binary=$1
layout=$2

read -r start size < <(readelf -SW "$binary" | awk '$2 == ".text.sidecar" {print $4, $6}') || true
if [[ -z "${start:-}" ]]; then
    echo "sidecar_layout: $binary has no .text.sidecar section: $layout was not applied"
    exit 1
fi
size=$((16#$size))
end=$(printf '%016x' $((16#$start + size)))

# Every listed function the binary has, and how many of them lie in the section.
read -r listed inside < <(
    nm --defined-only "$binary" |
        awk -v start="x$start" -v end="x$end" '
            FNR == NR {
                if (match($0, /\*\(\.text\.[^ )]*/)) {
                    listed[substr($0, RSTART + 8, RLENGTH - 8)] = 1
                }
                next
            }
            ($3 in listed) && !seen[$3]++ {
                n++
                # Both are 16 hex digits: compared as strings ("x" keeps awk from reading numbers).
                address = "x" $1
                if (address >= start && address < end) in_section++
            }
            END { print n + 0, in_section + 0 }' "$layout" -
)
echo "sidecar_layout: .text.sidecar is $size bytes; $inside of the $listed listed functions in the binary lie in it"
if ((listed < 500)); then
    echo "sidecar_layout: only $listed of the listed functions are in the binary: regenerate $layout (scripts/sidecar-layout.sh)"
    exit 1
fi
if ((inside * 100 < listed * 95)); then
    echo "sidecar_layout: fewer than 95 % of them are in .text.sidecar"
    exit 1
fi
