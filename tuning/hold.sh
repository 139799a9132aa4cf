#!/usr/bin/env bash
# Pacing of a saturated worker's writes (`saturated_write_hold_us`, io::ring::pacing):
# off, 100 µs and the default 250 µs against the baseline relay, each spawned alone on
# CPU 0 (feedrelay: one worker), the load generator on CPU 1, alternating rounds, at
# loads that saturate one core (5k and 10k msg/s x 100 subscribers).
#
#   tuning/hold.sh [extra bench args]   (about 6 minutes; results/hold-*.{txt,json})
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(tuning/baseline.sh)
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p results
args=()
for h in 0 100 250; do
  args+=(--relay-config "hold-$h=tuning/configs/hold-$h.toml")
done
./target/release/feedrelay bench --spawn --idle park --baseline "$base" "${args[@]}" \
  --workers 1 --relay-cores 0 --bench-cores 1 --rates 5000,10000 --subs 100 \
  --topics 10 --size 256 --duration 10 --warmup 2 --rounds "${ROUNDS:-3}" \
  --json "results/hold-$stamp.json" "$@" | tee "results/hold-$stamp.txt"
