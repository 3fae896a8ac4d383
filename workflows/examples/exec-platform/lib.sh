# Shared by the exec-platform scripts. The "platform" is a directory ($PLATFORM_DIR):
#   sites/<site>/state      the site's state (active, deleted, restoring, active-again, ...)
#   sites/<site>/customer   its customer's ID
#   sites/<site>/products   its products, one per line
#   data/<site>/<product>   the product's data
#   steps.log               one line per step that did its work (for the tests to count)
# Backups are $BACKUPS/<site>/<product> with <product>.sha256 beside them.
set -eu
: "${PLATFORM_DIR:?PLATFORM_DIR is not set}"
site="${DROVER_SITE:-}"
product="${DROVER_PRODUCT:-}"

# Prints the SHA-256 of a file.
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Writes $2 into file $1 atomically (a reader never sees half of it).
put() { printf '%s\n' "$2" > "$1.tmp.$$" && mv "$1.tmp.$$" "$1"; }

# The site's state.
state() { cat "$PLATFORM_DIR/sites/$site/state"; }

# Records that this step did its work.
done_step() { echo "$DROVER_STEP_ID" >> "$PLATFORM_DIR/steps.log"; }

# Exit codes drover understands: 0 done, 75 try again, anything else permanent.
