#!/usr/bin/env bash
# SQPOLL with its thread on the other core: one worker on core 1, its SQ thread pinned
# to CPU 0, idle 1000 ms and 10 ms, against no SQPOLL; alternating rounds of one run.
# Usage: tuning/sqpoll.sh [extra bench args]   (results in results/sqpoll-*.{txt,json})
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p results
./target/release/feedrelay bench --spawn --idle park --workers 1 --cores 1 \
  --relay-config default=tuning/configs/default.toml \
  --relay-config sqpoll-cpu0=tuning/configs/sqpoll-cpu0.toml \
  --relay-config sqpoll-idle10-cpu0=tuning/configs/sqpoll-idle10-cpu0.toml \
  --rate 10000 --subs 10 --topics 10 --size 256 \
  --duration 10 --warmup 2 --rounds 2 \
  --json "results/sqpoll-$stamp.json" "$@" | tee "results/sqpoll-$stamp.txt"
