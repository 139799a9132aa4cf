#!/usr/bin/env bash
# The measured matrix of tuning/RESULTS.md: idle strategy x pinned/unpinned x SQPOLL,
# every variant alternating within each round so ratios come from one run.
# Usage: tuning/matrix.sh [extra bench args]   (results in results/matrix-*.{txt,json})
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p results
./target/release/feedrelay bench --spawn \
  --idle spin,yield,park --pin on,off \
  --relay-config default=tuning/configs/default.toml \
  --relay-config sqpoll=tuning/configs/sqpoll.toml \
  --workers 2 --rate 10000 --subs 10 --topics 10 --size 256 \
  --duration 10 --warmup 2 --rounds 2 \
  --json "results/matrix-$stamp.json" "$@" | tee "results/matrix-$stamp.txt"
