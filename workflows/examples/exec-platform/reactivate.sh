#!/bin/sh
# Puts the site back in service: only from restoring (compare and set), once.
. "$(dirname "$0")/lib.sh"
case "$(state)" in
  restoring) put "$PLATFORM_DIR/sites/$site/state" active-again ;;
  active-again) exit 0 ;;  # done by an earlier attempt whose success was not recorded
  *) echo "$site is $(state): refusing to reactivate it"; exit 1 ;;
esac
echo "$site" >> "$PLATFORM_DIR/reactivations.log"
done_step
