#!/usr/bin/env bash
# What the last-value cache and snapshot ordering cost: three relays running at once
# (two workers each, unpinned, the defaults), measured in alternating rounds by one
# `feedrelay bench`: the build before snapshots existed (BEFORE=path to its binary),
# this build with the cache on (the default), and this build with it off.
#
#   BEFORE=/path/to/old/feedrelay tuning/last_value.sh [OUT_DIR]     about 2 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/last_value}"
mkdir -p "$out"
cargo build --release --quiet
new=./target/release/feedrelay
old="${BEFORE:?set BEFORE to the feedrelay binary to compare against}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start() { # NAME BINARY [CONFIG]: starts it, its pid added to pids
  "$2" run --listen 127.0.0.1:0 --workers 2 ${3:+--config "$3"} > "$out/$1.log" 2>&1 &
  pids+=($!)
}
url() { # NAME: its address, once it listens
  for _ in $(seq 100); do grep -q "listening on" "$out/$1.log" && break; sleep 0.1; done
  grep -o 'ws://[0-9.:]*' "$out/$1.log" | sed -n 1p
}
start before "$old"
start cache_on "$new" tuning/last_value/on.toml
start cache_off "$new" tuning/last_value/off.toml
before=$(url before) on=$(url cache_on) off=$(url cache_off)
"$new" bench --target "before=$before/" --target "cache_on=$on/" --target "cache_off=$off/" \
  --relay-pid "${pids[0]}" --relay-pid "${pids[1]}" --relay-pid "${pids[2]}" \
  --rate "${RATE:-10000}" --subs 10 --topics 10 --size 256 \
  --duration 10 --warmup 2 --rounds 3 --json "$out/last_value.json" 2>/dev/null | tee "$out/last_value.txt"
