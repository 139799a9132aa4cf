#!/usr/bin/env bash
# Relay CPU per feed message, ws:// against wss:// (rustls), in alternating rounds:
# one mock exchange at RATE trades/s, one relay worker dialling it, no subscribers;
# relay user+system time from /proc over a 10 s window after 2 s of warm-up.
# Usage: scripts/feed-cpu.sh [RATE] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
rate=${1:-20000}
rounds=${2:-3}
B=$PWD/target/release/feedrelay
dir=$(mktemp -d)
trap 'rm -rf "$dir"; kill $(jobs -p) 2>/dev/null || true' EXIT
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
echo "rate $rate trades/s, 10 s windows; cpu us/msg = relay CPU / (rate x 10 s)"
for round in $(seq "$rounds"); do
  for mode in ws wss; do
    args=(--listen 127.0.0.1:0 --rate "$rate")
    [ "$mode" = wss ] && args+=(--tls-self-signed "$dir/certs")
    "$B" mock-exchange "${args[@]}" > "$dir/m.out" 2>/dev/null & mp=$!
    sleep 0.5
    port=$(grep -o '127.0.0.1:[0-9]*' "$dir/m.out" | cut -d: -f2)
    cat > "$dir/r.toml" <<TOML
topic_pointer = "/data/s"
[[feeds]]
name = "x"
url = "$mode://localhost:$port/stream"
subscribe = ['{"method":"SUBSCRIBE","params":["*"],"id":1}']
seq_pointer = "/data/u"
ca_file = "$dir/certs/ca.pem"
TOML
    "$B" run --config "$dir/r.toml" --workers 1 --listen 127.0.0.1:0 --no-metrics > "$dir/r.out" 2>/dev/null & rp=$!
    sleep 2
    c0=$(cpu $rp)
    sleep 10
    c1=$(cpu $rp)
    kill $rp; wait $rp 2>/dev/null || true
    kill $mp; wait $mp 2>/dev/null || true
    awk -v r="$round" -v m="$mode" -v c="$((c1 - c0))" -v t="$tck" -v n="$rate" \
      'BEGIN { printf "round %s %-3s relay cpu %.2f s  %.2f us/msg\n", r, m, c / t, c / t / (n * 10) * 1e6 }'
  done
done
