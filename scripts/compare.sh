#!/usr/bin/env bash
# Runs feedrelay, the baseline relay (tokio + tokio-tungstenite + broadcast) and the
# floor (no relay: the publisher writes straight to each subscriber) side by side under
# the same open-loop load, in alternating rounds, and leaves the table, a JSON file and
# an hlog in results/. Every argument is passed to `feedrelay bench` (defaults below).
#
#   scripts/compare.sh --rate 50000 --subs 10 --duration 20 --rounds 3
#
# PIN=1 gives the load generator a core of its own (above ~500k deliveries/s on a
# 2-core box it needs one): both relays run on core 0 (feedrelay with one worker pinned
# there), the bench on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p results
cargo build --release --quiet
cargo bench --no-run --quiet --bench baseline_relay 2>/dev/null
base_bin=$(ls -t target/release/deps/baseline_relay-* | grep -v '\.d$' | head -1)

if [ "${PIN:-0}" = 1 ]; then
  relay_pin=(taskset -c 0); bench_pin=(taskset -c 1); relay_args=(--workers 1 --cores 0)
else
  relay_pin=(); bench_pin=(); relay_args=(--workers "${WORKERS:-2}")
fi
"${relay_pin[@]}" ./target/release/feedrelay run --listen 127.0.0.1:0 "${relay_args[@]}" > results/feedrelay.out 2>&1 &
relay=$!
"${relay_pin[@]}" "$base_bin" --listen 127.0.0.1:0 > results/baseline.out 2>&1 &
base=$!
trap 'kill $relay $base 2>/dev/null || true' EXIT
for f in results/feedrelay.out results/baseline.out; do
  for _ in $(seq 50); do grep -q "listening on" "$f" && break; sleep 0.1; done
done
relay_url=$(grep -o 'ws://[0-9.:]*' results/feedrelay.out | head -1)
base_url=$(grep -o 'ws://[0-9.:]*' results/baseline.out | head -1)
stamp=$(date +%Y%m%d-%H%M%S)
"${bench_pin[@]}" ./target/release/feedrelay bench \
  --target "feedrelay=$relay_url/" --relay-pid "$relay" \
  --target "baseline=$base_url/" --relay-pid "$base" --floor \
  --json "results/compare-$stamp.json" --hlog "results/compare-$stamp.hlog" --plot "results/compare-$stamp.svg" "$@" | tee "results/compare-$stamp.txt"
