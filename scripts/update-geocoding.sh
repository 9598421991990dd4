#!/usr/bin/env bash
# Replaces shared/data/libphonenumber/geocoding_en_1.txt (the NANP prefix → "City, ST" / region
# table the compliance engine derives a number's state from) with libphonenumber's maintained
# file.
#
#   scripts/update-geocoding.sh /path/to/libphonenumber-checkout
#
# The file is used as it is (parsed when first needed, see
# shared/src/compliance/jurisdiction/area_code.rs), so updating it is a copy plus a check that
# every data line still has the expected shape.
set -euo pipefail
src="${1:?usage: $0 LIBPHONENUMBER_CHECKOUT}/resources/geocoding/en/1.txt"
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
dst="$here/shared/data/libphonenumber/geocoding_en_1.txt"
test -f "$src" || { echo "no $src" >&2; exit 1; }
# Every data line is 1<digits>|<description>.
if grep -v '^#' "$src" | grep -v '^$' | grep -Ev '^1[0-9]+\|.+$' | head -1 | grep -q .; then
    echo "unexpected line format in $src" >&2; exit 1
fi
cp "$src" "$dst"
echo "copied $(grep -cv '^#' "$dst") lines to $dst; update the commit named in shared/data/libphonenumber/README.md, then run: cargo nextest run -p dialfleet-shared --lib jurisdiction"
