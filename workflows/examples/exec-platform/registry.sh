#!/bin/sh
# The registry behind a command ([target] registry = { exec = [this, <platform dir>] }). drover
# names the operation in DROVER_REGISTRY_OP (docs/request-format.md, "A registry behind a
# command"):
#   lookup      IDs on standard input; one JSON line per site it knows, with the run holding it
#   claim       site IDs on standard input, the run in DROVER_RUN_*: all of them or none
#   release     every claim of the run DROVER_RUN_ID
#   reactivate  DROVER_SITE back in service: only from a state in DROVER_EXPECTED, once per
#               DROVER_IDEMPOTENCY_KEY
# Claims are kept as sites/<site>/claim; writers take turns on registry.lock.
set -eu
dir="$1"

# $1 as the inside of a JSON string.
esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

# Waits for the other writers.
lock() { exec 9>"$dir/registry.lock" && flock 9; }

# The run holding site $1, if any.
holder() { [ -f "$dir/sites/$1/claim" ] && sed -n 's/.*"run_id":"\([^"]*\)".*/\1/p' "$dir/sites/$1/claim" || true; }

case "${DROVER_REGISTRY_OP:-lookup}" in
lookup)
  while read -r id; do
    d="$dir/sites/$id"
    [ -f "$d/state" ] || continue
    products=$(sed 's/.*/"&"/' "$d/products" | paste -sd, -)
    held=""
    [ -f "$d/claim" ] && held=",\"held_by\":$(cat "$d/claim")"
    printf '{"id":"%s","kind":"site","state":"%s","customer":"%s","products":[%s]%s}\n' \
      "$id" "$(cat "$d/state")" "$(cat "$d/customer")" "$products" "$held"
  done
  ;;
claim)
  lock
  ids=$(cat)
  me=$(printf '{"run_id":"%s","ledger":"%s","host":"%s","pid":%d,"at":%d}' \
    "$(esc "$DROVER_RUN_ID")" "$(esc "$DROVER_RUN_LEDGER")" "$(esc "$DROVER_RUN_HOST")" \
    "$DROVER_RUN_PID" "$DROVER_RUN_AT")
  others=""
  for id in $ids; do
    h=$(holder "$id")
    if [ -n "$h" ] && [ "$h" != "$DROVER_RUN_ID" ]; then
      others="$others${others:+,}{\"site\":\"$id\",$(sed 's/^{//' "$dir/sites/$id/claim")"
    fi
  done
  if [ -n "$others" ] && [ "$DROVER_TAKE_OVER" != 1 ]; then
    printf '{"claimed":false,"held":[%s]}\n' "$others"
    exit 0
  fi
  for id in $ids; do
    if [ -d "$dir/sites/$id" ]; then printf '%s\n' "$me" > "$dir/sites/$id/claim"; fi
  done
  printf '{"claimed":true,"taken_over":[%s]}\n' "$others"
  ;;
release)
  lock
  for d in "$dir"/sites/*; do
    if [ "$(holder "$(basename "$d")")" = "$DROVER_RUN_ID" ]; then rm "$d/claim"; fi
  done
  echo '{}'
  ;;
reactivate)
  lock
  d="$dir/sites/$DROVER_SITE"
  echo "$DROVER_SITE" >> "$dir/reactivate-calls.log"
  state=$(cat "$d/state")
  case " $DROVER_EXPECTED " in
    *" $state "*) ;;
    *)
      # Done before under this key (its answer was lost), or refused.
      if [ "$(cat "$d/reactivated-by" 2>/dev/null || true)" = "$DROVER_IDEMPOTENCY_KEY" ]; then
        echo '{"reactivated":false}'
      else
        printf '{"refused":"%s is %s"}\n' "$DROVER_SITE" "$state"
      fi
      exit 0
      ;;
  esac
  # The key first: a call cut short between the two lines finishes the flip when retried.
  printf '%s\n' "$DROVER_IDEMPOTENCY_KEY" > "$d/reactivated-by"
  printf 'active-again\n' > "$d/state.tmp" && mv "$d/state.tmp" "$d/state"
  echo "$DROVER_SITE" >> "$dir/reactivations.log"
  echo '{"reactivated":true}'
  ;;
*)
  echo "unknown operation ${DROVER_REGISTRY_OP}" >&2
  exit 2
  ;;
esac
