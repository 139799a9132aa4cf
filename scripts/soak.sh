#!/usr/bin/env bash
# Soak: a release relay under churn and abuse for a while (default 10 minutes), with
# its RSS, open descriptors, connection counts and a clean subscriber's loss and latency
# compared between the start and the end (tests/python/soak.py says what runs and the
# bounds). Exit 0 when every bound holds.
#
#   scripts/soak.sh                 10 minutes
#   scripts/soak.sh --duration 60   one minute
#   scripts/soak.sh --short         30 seconds (what scripts/test.sh runs)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/build.sh
source scripts/lib/build.sh
duration=600
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --short) duration=30; shift ;;
    *) echo "usage: scripts/soak.sh [--duration SECONDS | --short]" >&2; exit 2 ;;
  esac
done
py="${FEEDRELAY_PYTHON:-.venv/bin/python}"
"$py" -c 'import websockets' 2>/dev/null || { echo "soak: $py has no websockets; run scripts/test.sh once (it makes .venv)" >&2; exit 2; }
build "target/$profile/feedrelay"
dir=$(mktemp -d)
trap 'kill "$relay" 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/soak.toml" <<TOML
listen = "127.0.0.1:0"
handshake_timeout_ms = 2000
idle_timeout_ms = 5000
keepalive_interval_ms = 1000
write_timeout_ms = 2000
metrics_on_data_port = true
TOML
./target/$profile/feedrelay run --config "$dir/soak.toml" > "$dir/relay.out" 2> "$dir/relay.err" &
relay=$!
for _ in $(seq 100); do grep -q "listening on" "$dir/relay.out" && break; sleep 0.1; done
url=$(grep -o 'ws://[0-9.:]*' "$dir/relay.out" | sed -n 1p)
[ -n "$url" ] || { echo "soak: the relay did not start:" >&2; cat "$dir/relay.err" >&2; exit 1; }
echo "soak: relay pid $relay at $url for ${duration}s"
status=0
"$py" tests/python/soak.py --url "$url" --metrics "${url/ws:/http:}/metrics" --pid "$relay" \
  --duration "$duration" || status=$?
kill -TERM "$relay"
wait "$relay" || { echo "soak: the relay exited with $?" >&2; status=1; }
tail -3 "$dir/relay.out"
exit $status
