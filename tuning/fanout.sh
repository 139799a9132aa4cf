#!/usr/bin/env bash
# Fan-out against the baseline relay (benches/baseline_relay.rs: tokio-tungstenite, one
# thread here), each alone on CPU 0 (feedrelay: one worker), the load generator on
# CPU 1. Every round is one `feedrelay bench` run that alternates the two; the table
# gives medians over the rounds, per load, with loopback's receive processing left on
# the sender (`rx on sender`, as loopback charges it) and steered to CPU 1 (`rx on
# cpu1`: what the relay's core would pay in front of a NIC; needs root, the old value
# is put back). Then the unpinned defaults with the floor (no relay), for tails.
#
#   tuning/fanout.sh [OUT_DIR]         about 30 minutes with the defaults
#   ROUNDS=5 LOADS="5000x100 20000x10" STEER="off on" UNPINNED="10000x10" tuning/fanout.sh
#   (a variable set empty runs none of its part: UNPINNED="" skips the unpinned runs)
#   CPU_SAMPLES=1 tuning/fanout.sh     splits user and sys CPU by samples of the relays'
#   threads (feedrelay bench --cpu-samples): right where /proc's tick split is not, but
#   it raises the tails a little, so judge latency from a run without it
#   UWS=$(tuning/uws.sh /path/to/uWebSockets) tuning/fanout.sh   adds uWebSockets
#   (tuning/uws/uws_relay.cpp, one thread) as a third relay in every round
#   FEEDRELAY_BIN=target/pgo/release/feedrelay tuning/fanout.sh   measures another
#   build of feedrelay (there: scripts/pgo.sh's); it is the generator too
#
# Columns: p50/p99/p99.99 (µs, from the scheduled send time), relay user and sys CPU
# per delivery (ns: the exact total from /proc/PID/stat, split by the tick or, with
# CPU_SAMPLES, by samples of the relay's threads: docs/benchmarks.md), the relay's TCP
# segments per delivery (counted by
# the subscribers' own sockets, TCP_INFO), host IPIs per delivery, how busy the
# generator's cores were (%, /proc/stat: near 100 its own queueing is in the latency),
# deliveries lost. Ratios are feedrelay over the baseline (and over uWebSockets, with UWS).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/fanout}"
rounds="${ROUNDS:-5}"
loads="${LOADS-5000x100 10000x100 20000x10 50000x10}"
steer_modes="${STEER-off on}"
unpinned="${UNPINNED-5000x100 10000x100 50000x10 10000x10}"
bin="${FEEDRELAY_BIN:-./target/release/feedrelay}"
[ -x "$bin" ] || { echo "fanout.sh: $bin is not an executable (cargo build --release)" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out"/*.json
base=$(tuning/baseline.sh)
peers=(--baseline "$base")
if [ -n "${UWS:-}" ]; then
  [ -x "$UWS" ] || { echo "fanout.sh: UWS=$UWS is not an executable (build it with tuning/uws.sh)" >&2; exit 2; }
  peers+=(--baseline "uws=$UWS")
fi
rps=/sys/class/net/lo/queues/rx-0/rps_cpus
old=$(cat "$rps" 2>/dev/null || echo "")
restore() { if [ -n "$old" ] && [ -w "$rps" ]; then echo "$old" > "$rps"; fi; }
trap restore EXIT
run() { # label rate subs round [bench args...]
  local label=$1 rate=$2 subs=$3 r=$4
  shift 4
  "$bin" bench --spawn "${peers[@]}" --subs "$subs" --rate "$rate" \
    --duration 10 --warmup 2 --rounds 1 ${CPU_SAMPLES:+--cpu-samples} \
    --json "$out/$label-${rate}x$subs-r$r.json" "$@" \
    >"$out/$label-${rate}x$subs-r$r.txt" 2>&1 || echo "  (round $r of $label ${rate}x$subs failed: see $out)"
}
for steer in $steer_modes; do
  label="pinned-rx-$steer"
  if [ "$steer" = on ]; then
    if ! [ -w "$rps" ]; then echo "== $label: skipped ($rps is not writable: run as root)"; continue; fi
    echo 2 > "$rps"
  elif [ -w "$rps" ]; then
    echo 0 > "$rps"
  fi
  for load in $loads; do
    echo "== $label $load: $rounds rounds"
    for r in $(seq "$rounds"); do run "$label" "${load%x*}" "${load#*x}" "$r" --relay-cores 0 --bench-cores 1; done
  done
done
restore
for load in $unpinned; do
  echo "== unpinned $load (defaults, with the floor): $rounds rounds"
  for r in $(seq "$rounds"); do run unpinned "${load%x*}" "${load#*x}" "$r" --floor; done
done
python3 tuning/fanout_table.py "$out" | tee "$out/table.md"
