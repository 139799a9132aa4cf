#!/usr/bin/env bash
# A change measured against the build before it and the baseline relay: the three
# started at once, each pinned to CPU 0 (feedrelay with one worker, the baseline with
# one thread), the load generator on CPU 1; each round is one `feedrelay bench` that
# measures them one after another (idle relays cost nothing meanwhile). Prints medians
# over the rounds and the ratios (tuning/ab_table.py).
#
#   git worktree add /tmp/old HEAD~3 && (cd /tmp/old && cargo build --release)
#   tuning/ab.sh /tmp/old/target/release/feedrelay [OUT_DIR]
#   ROUNDS=5 LOADS="5000x100 20000x10" tuning/ab.sh OLD_BINARY
#   CPU_SAMPLES=1 tuning/ab.sh OLD   user/sys split by samples (bench --cpu-samples)
#
# Needs both builds done before it starts: compiling during a round perturbs it.
set -euo pipefail
cd "$(dirname "$0")/.."
old_bin="${1:?usage: tuning/ab.sh OLD_BINARY [OUT_DIR]}"
out="${2:-target/ab}"
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.txt
base=$(tuning/baseline.sh)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pn=$(port); po=$(port); pb=$(port)
taskset -c 0 ./target/release/feedrelay run --listen 127.0.0.1:$pn --workers 1 --cores 0 >"$out/new.log" 2>&1 &
new_pid=$!
taskset -c 0 "$old_bin" run --listen 127.0.0.1:$po --workers 1 --cores 0 >"$out/old.log" 2>&1 &
old_pid=$!
taskset -c 0 "$base" --listen 127.0.0.1:$pb --threads 1 >"$out/base.log" 2>&1 &
base_pid=$!
trap 'kill $new_pid $old_pid $base_pid 2>/dev/null || true' EXIT
sleep 2
for load in ${LOADS:-5000x100 20000x10}; do
  rate=${load%x*}
  subs=${load#*x}
  echo "== $load: ${ROUNDS:-5} rounds"
  for r in $(seq "${ROUNDS:-5}"); do
    taskset -c 1 ./target/release/feedrelay bench \
      --target new=ws://127.0.0.1:$pn/ --relay-pid $new_pid \
      --target old=ws://127.0.0.1:$po/ --relay-pid $old_pid \
      --target base=ws://127.0.0.1:$pb/ --relay-pid $base_pid \
      --rate "$rate" --subs "$subs" --duration 10 --warmup 2 --rounds 1 --bench-cores 1 \
      ${CPU_SAMPLES:+--cpu-samples} \
      --json "$out/$load-r$r.json" >"$out/$load-r$r.txt" 2>&1 || echo "  (round $r failed: see $out)"
  done
done
python3 tuning/ab_table.py "$out" | tee "$out/table.md"
