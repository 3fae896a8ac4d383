#!/bin/sh
# Restores the product's data from what the fetch staged. Never over a live site.
. "$(dirname "$0")/lib.sh"
case "$(state)" in
  deleted) put "$PLATFORM_DIR/sites/$site/state" restoring ;;
  restoring) ;;
  *) echo "$site is $(state): refusing to restore over it"; exit 1 ;;
esac
staged="${DROVER_UPSTREAM_STAGING%%:*}/$product"
mkdir -p "$PLATFORM_DIR/data/$site"
cp "$staged" "$PLATFORM_DIR/data/$site/$product.tmp.$$"
# Inherited from drover's environment, for the tests: how long the write takes.
sleep "${RESTORE_SECONDS:-0}"
mv "$PLATFORM_DIR/data/$site/$product.tmp.$$" "$PLATFORM_DIR/data/$site/$product"
done_step
