#!/bin/sh
# Fetches the product's backup into this step's staging directory and checks its digest.
. "$(dirname "$0")/lib.sh"
src="$BACKUPS/$site/$product"
dst="$DROVER_STAGING/$product"
[ -f "$src" ] || { echo "no backup of $site/$product"; exit 1; }
if [ ! -f "$dst" ] || [ "$(sha "$dst")" != "$(cat "$src.sha256")" ]; then
  cp "$src" "$dst.part"
  [ "$(sha "$dst.part")" = "$(cat "$src.sha256")" ] || { rm -f "$dst.part"; echo "damaged in transit"; exit 75; }
  mv "$dst.part" "$dst"
fi
done_step
