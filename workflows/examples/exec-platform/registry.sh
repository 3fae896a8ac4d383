#!/bin/sh
# The registry behind a command ([target] registry = { exec = [this, <platform dir>] }): IDs on
# standard input, one JSON line per site it knows on standard output.
set -eu
dir="$1"
while read -r id; do
  d="$dir/sites/$id"
  [ -f "$d/state" ] || continue
  products=$(sed 's/.*/"&"/' "$d/products" | paste -sd, -)
  printf '{"id":"%s","kind":"site","state":"%s","customer":"%s","products":[%s]}\n' \
    "$id" "$(cat "$d/state")" "$(cat "$d/customer")" "$products"
done
