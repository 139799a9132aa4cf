#!/usr/bin/env bash
# System calls per relayed message and per delivery, counted exactly (the kernel's
# syscall tracepoints, `perf stat -e ... -p PID`), for feedrelay and the baseline relay
# at the same loads. Beside them: the io_uring operations feedrelay submits
# (`io_uring:io_uring_submit_req`), which is where its writes are, since one
# `io_uring_enter` carries many.
#
#   tuning/syscalls.sh [OUT_DIR]
#   ROUNDS=3 LOADS="5000x100 20000x10" tuning/syscalls.sh
#
# Each relay runs long, pinned to CPU 0 (feedrelay one worker, the baseline one thread);
# the generator (`feedrelay bench --target`, 10 s after 2 s warm-up, 256 B, 10 topics)
# on CPU 1. The count covers every thread of the relay for WINDOW seconds (5 by
# default) from 5 s after the bench starts, inside its measured time; the generator is
# open-loop, so that window carries rate x WINDOW messages. Needs perf and permission
# to attach to the relay (root, or kernel.perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/syscalls}"
rounds="${ROUNDS:-3}"
loads="${LOADS:-5000x100 20000x10}"
window="${WINDOW:-5}"
command -v perf >/dev/null || { echo "syscalls.sh: needs perf (apt install linux-perf)" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out"/*.csv "$out"/*.txt "$out"/*.json
base=$(tuning/baseline.sh)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pf=$(port); pb=$(port)
taskset -c 0 ./target/release/feedrelay run --listen 127.0.0.1:$pf --workers 1 --cores 0 >"$out/feedrelay.log" 2>&1 &
fpid=$!
taskset -c 0 "$base" --listen 127.0.0.1:$pb --threads 1 >"$out/baseline.log" 2>&1 &
bpid=$!
trap 'kill $fpid $bpid 2>/dev/null || true' EXIT
sleep 2
events=raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req
for call in writev sendto sendmsg write read recvfrom epoll_wait futex; do
  events="$events,syscalls:sys_enter_$call"
done
for load in $loads; do
  rate=${load%x*} subs=${load#*x}
  echo "== $load: $rounds rounds"
  for r in $(seq "$rounds"); do
    for relay in feedrelay baseline; do
      if [ "$relay" = feedrelay ]; then port=$pf pid=$fpid; else port=$pb pid=$bpid; fi
      name="$relay-$load-r$r"
      taskset -c 1 ./target/release/feedrelay bench --target "$relay=ws://127.0.0.1:$port/" \
        --relay-pid "$pid" --rate "$rate" --subs "$subs" --duration 10 --warmup 2 --rounds 1 \
        --bench-cores 1 --json "$out/$name.json" >"$out/$name.bench.txt" 2>&1 &
      bench=$!
      sleep 5
      if ! perf stat -x, -e "$events" -p "$pid" -o "$out/$name.csv" -- sleep "$window"; then
        kill "$bench" 2>/dev/null || true
        echo "syscalls.sh: perf could not count $relay (pid $pid): run as root, or set" \
          "kernel.perf_event_paranoid to 1 or less (perf said why above)" >&2
        exit 1
      fi
      wait "$bench" || echo "  (bench $name failed: see $out/$name.bench.txt)"
    done
  done
done
python3 tuning/syscalls_table.py "$out" "$window" $loads | tee "$out/table.md"
