#!/usr/bin/env bash
# A burst of ES256 logins beside a flowing pair, two relay builds in alternating rounds
# (examples/login_burst.rs): the pair's latency during the burst, medians of ROUNDS.
#   tuning/login_burst.sh OLD_BINARY [NEW_BINARY]   (env: ROUNDS=5 LOGINS=500)
set -euo pipefail
old=${1:?usage: tuning/login_burst.sh OLD_BINARY [NEW_BINARY]}
new=${2:-target/release/feedrelay}
rounds=${ROUNDS:-5}
logins=${LOGINS:-500}
cargo build --release --example login_burst >/dev/null
out=$(mktemp)
for _ in $(seq "$rounds"); do
  for side in old new; do
    bin=$old
    [ "$side" = new ] && bin=$new
    target/release/examples/login_burst --relay "$bin" --logins "$logins" |
      awk -v s="$side" '/answered/{ms=$(NF-1)} /burst:/{print s, ms, $5, $8, $11, $14}' >>"$out"
  done
done
echo "medians of $rounds rounds, $logins logins at once, pair at 2,000 msg/s (µs; burst in ms)"
printf '%-4s %10s %8s %8s %8s %8s\n' build burst_ms p50 p99 p99.9 max
for side in old new; do
  printf '%-4s' "$side"
  for col in 2 3 4 5 6; do
    grep "^$side " "$out" | awk -v c=$col '{print $c}' | sort -n |
      awk '{v[NR]=$1} END {printf " %9s", v[int((NR+1)/2)]}'
  done
  echo
done
rm -f "$out"
