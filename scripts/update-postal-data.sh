#!/usr/bin/env bash
# Replaces shared/data/libaddressinput/countryinfo.txt (Google's address metadata: each US
# state's ZIP prefixes, from which a contact's postalCode gets its state) with libaddressinput's
# maintained copy.
#
#   scripts/update-postal-data.sh /path/to/libaddressinput-checkout
#
# The file is used as it is (parsed when first needed, see
# shared/src/compliance/jurisdiction/postal.rs), so updating it is a copy plus a check that
# every US state line still has its `zip` prefixes.
set -euo pipefail
src="${1:?usage: $0 LIBADDRESSINPUT_CHECKOUT}/testdata/countryinfo.txt"
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
dst="$here/shared/data/libaddressinput/countryinfo.txt"
test -f "$src" || { echo "no $src" >&2; exit 1; }
# Every line is <kind>/<key>={json}; every US state line names its ZIP prefixes.
if grep -v '^$' "$src" | grep -Ev '^[a-z]+(/[^=]*)?=\{.*\}$' | head -1 | grep -q .; then
    echo "unexpected line format in $src" >&2; exit 1
fi
states=$(grep -E '^data/US/[A-Z]{2}=' "$src" | grep -c '"zip":"')
if [ "$states" -lt 56 ]; then
    echo "only $states US entries with ZIP prefixes in $src" >&2; exit 1
fi
cp "$src" "$dst"
echo "copied $src ($states US entries) to $dst; update the commit named in shared/data/libaddressinput/README.md, then run: cargo nextest run -p dialfleet-shared --lib postal"
