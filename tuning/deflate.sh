#!/usr/bin/env bash
# permessage-deflate measured side by side: off, compressed once per message (shared),
# and compressed per subscriber, at 10 and 100 subscribers, same deliveries per second
# (200k/s), order-book payloads, every subscriber offering deflate. The relay on core 0
# (one worker), the load generator on core 1.
#
#   tuning/deflate.sh [OUT_DIR]        about 4 minutes
#   SIZE=1024 LOADS="10 10000" tuning/deflate.sh      other sizes and loads ("SUBS RATE",
#                                                    several separated by ;)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/deflate}"
mkdir -p "$out"
cargo build --release --quiet
IFS=';' read -ra loads <<< "${LOADS:-10 20000;100 2000}"
for load in "${loads[@]}"; do
  set -- $load
  ./target/release/feedrelay bench --spawn --workers 1 --relay-cores 0 --bench-cores 1 \
    --relay-config off=tuning/deflate/off.toml \
    --relay-config shared=tuning/deflate/shared.toml \
    --relay-config per_subscriber=tuning/deflate/per_subscriber.toml \
    --deflate --payload book --size "${SIZE:-256}" --subs "$1" --rate "$2" \
    --duration 10 --warmup 2 --rounds 3 --json "$out/subs$1-${SIZE:-256}B.json" 2>/dev/null | tee "$out/subs$1-${SIZE:-256}B.txt"
done
