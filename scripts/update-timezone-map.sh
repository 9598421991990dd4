#!/usr/bin/env bash
# Replaces shared/data/libphonenumber/timezones_map_data.txt (the phone-prefix → IANA timezone table the
# recipient calling hours use) with libphonenumber's maintained file.
#
#   scripts/update-timezone-map.sh /path/to/libphonenumber-checkout
#
# The file is used as it is (parsed when a role starts, see shared/src/compliance/zones.rs),
# so updating it is a copy plus a check that every line still parses.
set -euo pipefail
src="${1:?usage: $0 LIBPHONENUMBER_CHECKOUT}/resources/timezones/map_data.txt"
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
dst="$here/shared/data/libphonenumber/timezones_map_data.txt"
test -f "$src" || { echo "no $src" >&2; exit 1; }
# Every data line is digits|Zone(&Zone)*.
if grep -v '^#' "$src" | grep -v '^$' | grep -Ev '^[0-9]+\|[A-Za-z0-9_/+-]+(&[A-Za-z0-9_/+-]+)*$' | head -1 | grep -q .; then
    echo "unexpected line format in $src" >&2; exit 1
fi
cp "$src" "$dst"
echo "copied $(grep -cv '^#' "$dst") lines to $dst; update the commit named in shared/data/libphonenumber/README.md, then run: cargo test -p dialfleet-shared --lib compliance"
