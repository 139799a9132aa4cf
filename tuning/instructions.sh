#!/usr/bin/env bash
# User-space instructions per delivery and per fan-out write, counted exactly
# (valgrind's callgrind), for this build and another, at the same light load. /proc's
# user time is tick-sampled and moves by a fifth between rounds here; these counts move
# by under 2% per delivery and under 1% per write between runs of one build, and the
# ratio of two builds by under 0.5%, so a change of a few percent in the relay's own
# work shows here first (tuning/RESULTS.md, issue #24, eleventh pass). It is not time (cache misses, atomics and
# branch misses cost what callgrind does not count): confirm in `tuning/ab.sh`.
#
#   tuning/instructions.sh OLD_BINARY [OUT_DIR]
#   LOADS="500x100 2000x10" tuning/instructions.sh /tmp/old/target/release/feedrelay
#   UWS=$(MARCH=x86-64-v3 tuning/uws.sh /path/to/uWebSockets) tuning/instructions.sh OLD
#     adds uWebSockets (tuning/uws/uws_relay.cpp, one thread) at the same loads: its
#     instructions per delivery, every instruction of the process over the deliveries
#     the open-loop bench planned for warm-up and measurement (it keeps no count of its
#     own; a run that lost any is refused)
#   CALLGRIND_ARGS="--cache-sim=yes" tuning/instructions.sh OLD
#     passes options to callgrind (there: a simulated cache's misses beside the
#     instructions; tuning/cache_table.py OUT_DIR LOADS prints them per delivery)
# A build where `fanout::start` is inlined (scripts/pgo.sh's) has no writes to count:
# its per-write column is empty; per delivery still holds.
#
# Each run: the relay (one worker, `--idle park`) under callgrind, `feedrelay bench`
# outside it (rate x subscribers, 10 s after 2 s warm-up, 256 B, 10 topics), then
# SIGINT. Columns: deliveries (the relay's own count), instructions per delivery (every
# thread but the metrics collector's, whose renders follow wall time, not load),
# fan-out writes (calls of `fanout::start`) and instructions per write (the fan-out
# task and the ring's completion reaping). Under valgrind the relay is ~50x slower:
# keep the load light, or it falls behind and every write carries many frames.
set -euo pipefail
cd "$(dirname "$0")/.."
old_bin="${1:?usage: tuning/instructions.sh OLD_BINARY [OUT_DIR]}"
out="${2:-target/instructions}"
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt install valgrind)" >&2; exit 2; }
cargo build --release --quiet
new_bin=./target/release/feedrelay
mkdir -p "$out"
rm -f "$out"/*.cg "$out"/*.log "$out"/*.json
if [ -n "${UWS:-}" ]; then
  [ -x "$UWS" ] || { echo "instructions.sh: UWS=$UWS is not an executable (tuning/uws.sh)" >&2; exit 2; }
fi

measure() { # name binary rate subs
  local name=$1 bin=$2 rate=$3 subs=$4 log="$out/$1.log" url="" pid
  local args=(run --idle park --listen 127.0.0.1:0 --workers 1)
  [ "${name##*-}" = uws ] && args=(--listen 127.0.0.1:0)
  # shellcheck disable=SC2086 # CALLGRIND_ARGS is a list of options
  valgrind --tool=callgrind ${CALLGRIND_ARGS:-} --callgrind-out-file="$out/$name.cg" \
    "$bin" "${args[@]}" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 240); do
    url=$(grep -o 'ws://127\.0\.0\.1:[0-9]*' "$log" | sed -n 1p || true)
    [ -n "$url" ] && break
    sleep 0.25
  done
  if [ -z "$url" ]; then
    kill "$pid" 2>/dev/null || true
    echo "instructions.sh: $name: the relay did not start (see $log)" >&2
    exit 1
  fi
  if ! "$new_bin" bench --target "$url/" --rate "$rate" --subs "$subs" \
    --duration 10 --warmup 2 --rounds 1 --json "$out/$name.json" >"$out/$name.bench.txt" 2>&1; then
    kill "$pid" 2>/dev/null || true
    echo "instructions.sh: $name: the bench failed (see $out/$name.bench.txt)" >&2
    exit 1
  fi
  # SIGINT stops feedrelay; uws_relay has no handler, and a job started in the
  # background of a script ignores SIGINT, so it gets SIGTERM (callgrind writes its
  # counts either way).
  if [ "${name##*-}" = uws ]; then kill -TERM "$pid"; else kill -INT "$pid"; fi
  wait "$pid" || true
}

for load in ${LOADS:-500x100 2000x10}; do
  rate=${load%x*} subs=${load#*x}
  for variant in old new ${UWS:+uws}; do
    bin=$new_bin
    [ "$variant" = old ] && bin=$old_bin
    [ "$variant" = uws ] && bin=$UWS
    echo "== $load $variant" >&2
    measure "$load-$variant" "$bin" "$rate" "$subs"
  done
done
python3 tuning/instructions_table.py "$out" ${LOADS:-500x100 2000x10}
