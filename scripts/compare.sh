#!/usr/bin/env bash
# Runs feedrelay, the baseline relay (benches/baseline_relay.rs: tokio, tokio-tungstenite
# with 16 KiB reads, a broadcast channel, coalesced writes) and the floor (no relay: the
# publisher writes straight to each subscriber) side by side under the same open-loop
# load, in alternating rounds, each relay started for every run, and leaves the table, a
# JSON file, an hlog and a plot in results/. Every argument goes to `feedrelay bench`.
#
#   scripts/compare.sh --rate 50000 --subs 10 --duration 20 --rounds 3
#   scripts/compare.sh --rates 10000,20000,40000 --subs 10     # a sweep, with capacity
#
# PIN=1 gives the load generator a core of its own (above ~500k deliveries/s on a
# 2-core box it needs one): both relays on core 0, the generator on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p results
cargo build --release --quiet
cargo bench --no-run --quiet --bench baseline_relay 2>/dev/null
base=$(ls -t target/release/deps/baseline_relay-* | grep -v '\.d$' | sed -n 1p)
pin=()
if [ "${PIN:-0}" = 1 ]; then pin=(--relay-cores 0 --bench-cores 1); fi
stamp=$(date +%Y%m%d-%H%M%S)
./target/release/feedrelay bench --spawn --baseline "$base" --floor "${pin[@]}" \
  --json "results/compare-$stamp.json" --hlog "results/compare-$stamp.hlog" \
  --plot "results/compare-$stamp.svg" "$@" | tee "results/compare-$stamp.txt"
