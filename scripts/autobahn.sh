#!/usr/bin/env bash
# The real Autobahn|Testsuite (`wstest -m fuzzingclient`) against `feedrelay echo` on
# loopback, permessage-deflate offered by the suite and accepted by the echo server.
# Exit 0 when no case FAILED; the one-line summary names any that did.
#
#   scripts/autobahn.sh           cases 1-11 (framing, pings, reserved bits, opcodes,
#                                 fragmentation, UTF-8, close handling, limits; ~300)
#                                 and a subset of 12-13 (permessage-deflate: 27 cases)
#   scripts/autobahn.sh --all     every case (~517; 12-13 take about 4 minutes)
#   scripts/autobahn.sh --client [--all]
#                                 the client role: the suite's fuzzing server against
#                                 examples/autobahn_client.rs (an echo client over the
#                                 WsClient the feed lines dial with); the same quick
#                                 subset by default, every case with --all
#
# The runner, in this order:
#   WSTEST=/path/to/wstest        any wstest (the Python 2 original, a port): run with a
#                                 generated spec, its index.json summarised here
#   $AUTOBAHN_DIR                 a directory with `setup.sh` and `run.sh URL [CASES]`;
#                                 by default this repository's tests/autobahn (a Python 3
#                                 port of wstest installed from PyPI, see its README)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/build.sh
source scripts/lib/build.sh
deflate_subset="12.1.1,12.1.2,12.1.3,12.1.4,12.1.5,12.1.6,12.1.7,12.1.8,12.1.9"
deflate_subset+=",13.3.1,13.3.2,13.3.3,13.3.4,13.3.5,13.3.6,13.3.7,13.3.8,13.3.9"
deflate_subset+=",13.5.1,13.5.2,13.5.3,13.5.4,13.5.5,13.5.6,13.5.7,13.5.8,13.5.9"
cases="1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*,11.*,$deflate_subset"
role=server
if [ "${1:-}" = --client ]; then role=client; shift; fi
case "${1:-}" in
  --all) cases="*" ;;
  "") ;;
  *) echo "usage: scripts/autobahn.sh [--client] [--all]" >&2; exit 2 ;;
esac
dir="${AUTOBAHN_DIR:-$PWD/tests/autobahn}"
if [ "$role" = client ]; then
  [ -f "$dir/run-client.sh" ] || { echo "autobahn: no client runner at $dir/run-client.sh" >&2; exit 2; }
  build "target/$profile/examples/autobahn_client" --example autobahn_client
  client="$PWD/target/$profile/examples/autobahn_client"
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  OUT="${AUTOBAHN_OUT:-$out/report}" TIMEOUT="${AUTOBAHN_TIMEOUT:-1200}" AGENT=feedrelay \
    bash "$dir/run-client.sh" "$client" "$cases"
  exit $?
fi
if [ -z "${WSTEST:-}" ] && [ ! -f "$dir/run.sh" ]; then
  cat >&2 <<EOF
autobahn: no runner at $dir/run.sh. Set WSTEST to a wstest executable, or
AUTOBAHN_DIR to a directory with setup.sh and run.sh (tests/autobahn is the default).
EOF
  exit 2
fi
build "target/$profile/feedrelay"
out=$(mktemp -d)
./target/$profile/feedrelay echo --listen 127.0.0.1:0 > "$out/echo.out" 2>&1 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out/echo.out" && break; sleep 0.1; done
url=$(grep -o 'ws://[0-9.:]*' "$out/echo.out" | sed -n 1p)
[ -n "$url" ] || { echo "autobahn: feedrelay echo did not start:" >&2; cat "$out/echo.out" >&2; exit 1; }
report="${AUTOBAHN_OUT:-$out/report}"
if [ -z "${WSTEST:-}" ]; then
  OUT="$report" bash "$dir/run.sh" "$url" "$cases"
  exit $?
fi
# Any other wstest: our own spec, then the verdicts counted from its index.json (a case
# FAILED on its behaviour or its closing behaviour fails the run).
mkdir -p "$report"
python3 - "$url" "$cases" "$report" > "$out/spec.json" <<'EOF'
import json, sys
url, cases, report = sys.argv[1:]
print(json.dumps({"outdir": report, "servers": [{"agent": "feedrelay", "url": url}],
                  "cases": cases.split(","), "exclude-cases": [], "exclude-agent-cases": {}}))
EOF
"$WSTEST" -m fuzzingclient -s "$out/spec.json" > "$out/wstest.log" 2>&1 || true
python3 - "$report/index.json" <<'EOF'
import collections, json, sys
try:
    index = json.load(open(sys.argv[1]))["feedrelay"]
except (OSError, KeyError, ValueError) as e:
    sys.exit(f"autobahn: wstest wrote no usable report ({e})")
counts, failed = collections.Counter(), []
for case, r in index.items():
    bad = r["behavior"] == "FAILED" or r.get("behaviorClose") in ("FAILED", "UNCLEAN")
    counts["FAILED" if bad else r["behavior"]] += 1
    if bad:
        failed.append(case)
print(f"autobahn (WSTEST): {len(index)} cases: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
      + " | failed: " + (", ".join(sorted(failed)) or "none"))
sys.exit(1 if failed else 0)
EOF
