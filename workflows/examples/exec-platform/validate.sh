#!/bin/sh
# The restored data must be the backup's, byte for byte.
. "$(dirname "$0")/lib.sh"
want=$(cat "$BACKUPS/$site/$product.sha256")
got=$(sha "$PLATFORM_DIR/data/$site/$product")
[ "$got" = "$want" ] || { echo "$site/$product differs from its backup"; exit 1; }
done_step
