#!/usr/bin/env bash
# The NATS hop measured side by side with a chained WebSocket hop and a single relay,
# then the throughput through one nats-server. One nats-server and every relay on core
# 0 (one worker each), the load generator on core 1; the server's CPU time is counted
# with the relays' in the `nats` variant (--nats-pid), so CPU per delivery is the
# whole hop's.
#
#   tuning/nats.sh [OUT_DIR]        about 6 minutes; needs nats-server (scripts/test.sh
#                                   installs Debian's)
#   SUBS=10 RATE=10000 RATES=50000,100000,200000,400000 tuning/nats.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/nats}"
mkdir -p "$out"
command -v nats-server >/dev/null || { echo "nats-server not found: apt-get install nats-server" >&2; exit 1; }
cargo build --release --quiet
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
taskset -c 0 nats-server -a 127.0.0.1 -p "$port" >"$out/nats-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
common=(--spawn --workers 1 --relay-cores 0 --bench-cores 1
  --nats-url "nats://127.0.0.1:$port" --nats-pid "$server")

echo "== latency: one relay, two relays chained over WebSocket, two relays across NATS"
./target/release/feedrelay bench "${common[@]}" --hops 1,2,nats \
  --subs "${SUBS:-10}" --rate "${RATE:-10000}" --duration 10 --warmup 2 --rounds 3 \
  --json "$out/latency.json" 2>/dev/null | tee "$out/latency.txt"

echo "== throughput: one subscriber, rising rates, WebSocket chain against NATS"
./target/release/feedrelay bench "${common[@]}" --hops 2,nats --subs 1 \
  --rates "${RATES:-50000,100000,200000,400000}" --duration 5 --warmup 1 \
  --json "$out/throughput.json" 2>/dev/null | tee "$out/throughput.txt"

echo "== what exporting costs the relay's own subscribers: [nats] export off and on"
echo "   (the NATS thread shares core 0 with the worker: this box has no spare core)"
printf '# the defaults\n' > "$out/plain.toml"
printf '[nats]\nurls = ["nats://127.0.0.1:%s"]\nexport = true\n' "$port" > "$out/export.toml"
./target/release/feedrelay bench --spawn --workers 1 --relay-cores 0 --bench-cores 1 \
  --relay-config plain="$out/plain.toml" --relay-config export="$out/export.toml" \
  --subs "${SUBS:-10}" --rate "${RATE:-10000}" --duration 10 --warmup 2 --rounds 3 \
  --json "$out/export-cost.json" 2>/dev/null | tee "$out/export-cost.txt"
