#!/usr/bin/env bash
# The capacity figures of tuning/RESULTS.md and the README: feedrelay against the
# baseline relay (benches/baseline_relay.rs), each started for every run, alternating
# within each round so the ratios come from one run.
#
#   tuning/sweep.sh pinned10     relay on core 0, generator on core 1, 10 subscribers
#   tuning/sweep.sh pinned100    same, 100 subscribers
#   tuning/sweep.sh unpinned     default configurations, unpinned, with the floor:
#                                10k x 100, 50k x 10, 10k x 10
#
# Extra arguments go to `feedrelay bench` (e.g. --rounds 3). Results: results/sweep-*.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(tuning/baseline.sh)
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p results
what=${1:-pinned10}
shift || true
bench() { ./target/release/feedrelay bench --spawn --baseline "$base" "$@"; }
case "$what" in
  pinned10)
    bench --relay-cores 0 --bench-cores 1 --subs 10 \
      --rates 10000,20000,40000,60000,80000,100000 --duration 6 --warmup 2 --rounds 2 \
      --json "results/sweep-$what-$stamp.json" --plot "results/sweep-$what-$stamp.svg" "$@" ;;
  pinned100)
    bench --relay-cores 0 --bench-cores 1 --subs 100 \
      --rates 1000,2000,3000,4000,5000,6000,8000,10000 --duration 6 --warmup 2 --rounds 2 \
      --json "results/sweep-$what-$stamp.json" --plot "results/sweep-$what-$stamp.svg" "$@" ;;
  unpinned)
    for load in "10000 100" "50000 10" "10000 10"; do
      set -- $load
      bench --floor --rate "$1" --subs "$2" --duration 10 --warmup 2 --rounds 3 \
        --json "results/sweep-$what-$1x$2-$stamp.json"
    done ;;
  *) echo "usage: tuning/sweep.sh pinned10|pinned100|unpinned [bench args]" >&2; exit 2 ;;
esac 2>/dev/null | tee "results/sweep-$what-$stamp.txt"
