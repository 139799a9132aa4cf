#!/usr/bin/env bash
# The ring and socket options of tuning/RESULTS.md, each against the defaults, all in
# alternating rounds of one run (park, 2 workers, unpinned: the defaults otherwise).
# Usage: tuning/options.sh [extra bench args]   (results in results/options-*.{txt,json})
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p results
args=()
for c in default entries64 entries4096 nodelay-off buffers-16k buffers-4m; do
  args+=(--relay-config "$c=tuning/configs/$c.toml")
done
./target/release/feedrelay bench --spawn --idle park "${args[@]}" \
  --workers 2 --rate 10000 --subs 10 --topics 10 --size 256 \
  --duration 10 --warmup 2 --rounds 2 \
  --json "results/options-$stamp.json" "$@" | tee "results/options-$stamp.txt"
