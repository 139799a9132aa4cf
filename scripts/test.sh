#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (a Python
# venv with `websockets`, Debian's chromium, nats-server, prometheus (for promtool) and
# systemd (for systemd-analyze) when missing), then lint, unit, property,
# loopback integration and interop tests, and one pass of each benchmark in test mode
# (criterion runs each benchmark once under `cargo test --all-targets`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's heading says how long the suite has run so far (where the time goes).
step() { printf '\n== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

step "python venv with websockets and hdrhistogram (.venv)"
if ! .venv/bin/python -c 'import websockets, hdrh' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
export FEEDRELAY_PYTHON="$PWD/.venv/bin/python"
"$FEEDRELAY_PYTHON" -c 'import websockets; print("websockets", websockets.__version__)'

step "chromium (headless browser interop)"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export FEEDRELAY_CHROMIUM="$(command -v chromium)"
"$FEEDRELAY_CHROMIUM" --version 2>/dev/null | sed -n 1p

step "nats-server (the NATS backbone's tests start real servers)"
if ! command -v nats-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
fi
export FEEDRELAY_NATS_SERVER="$(command -v nats-server)"
"$FEEDRELAY_NATS_SERVER" --version

step "haproxy (a real load balancer sends PROXY v1 and v2 headers in tests/interop_haproxy.rs)"
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends haproxy >/dev/null
fi
export FEEDRELAY_HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
"$FEEDRELAY_HAPROXY" -v | sed -n 1p

step "perf events (with --cpu-samples the bench splits a relay's CPU time into user and kernel by sampling its threads)"
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo missing)
if [ "$paranoid" = missing ]; then
  echo "test.sh: this kernel has no perf events (/proc/sys/kernel/perf_event_paranoid); src/io/cpu_mode.rs and the bench tests need them" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ] && [ "$paranoid" -gt 1 ]; then
  echo "kernel.perf_event_paranoid is $paranoid: allowing kernel samples of our own processes (1)"
  sudo sysctl -q -w kernel.perf_event_paranoid=1
fi
echo "perf_event_paranoid $(cat /proc/sys/kernel/perf_event_paranoid), uid $(id -u)"

step "promtool and systemd-analyze (deploy/ is checked by tests/deploy.rs)"
need_pkgs=""
command -v promtool >/dev/null 2>&1 || need_pkgs="$need_pkgs prometheus"
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs="$need_pkgs systemd"
if [ -n "$need_pkgs" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # --no-install-recommends: promtool is all the tests use, not a running server.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need_pkgs >/dev/null
fi
export FEEDRELAY_PROMTOOL="$(command -v promtool)"
export FEEDRELAY_SYSTEMD_ANALYZE="$(command -v systemd-analyze)"
"$FEEDRELAY_PROMTOOL" --version 2>&1 | sed -n 1p

step "io_uring"
sysctl kernel.io_uring_disabled 2>/dev/null || echo "kernel.io_uring_disabled not present"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo doc --no-deps, warnings denied (every intra-doc link resolves)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

# One optimised build serves the tests, the conformance runs and the soak (the `ci`
# profile: release without whole-crate LTO; see Cargo.toml).
export FEEDRELAY_PROFILE=ci
step "cargo test --profile ci --all-targets (unit, property, loopback, interop; benches once in test mode)"
cargo test --profile ci --all-targets --quiet
# The binary and the examples the steps below run were built just now.
export FEEDRELAY_BUILT=1

step "Autobahn|Testsuite cases 1-11 against feedrelay echo (scripts/autobahn.sh)"
scripts/autobahn.sh

step "Autobahn|Testsuite, the client role: the same cases against the feed lines' client (scripts/autobahn.sh --client)"
scripts/autobahn.sh --client

step "fuzzing: ${FUZZ_SECONDS:=0} s per target (scripts/fuzz.sh; the default run replays every committed corpus input in tests/fuzz_corpora.rs instead)"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  FUZZ_SECONDS="$FUZZ_SECONDS" scripts/fuzz.sh
else
  echo "not fuzzing in this run: its sanitizer build alone takes ~7 minutes on 2 cores; FUZZ_SECONDS=60 scripts/test.sh or scripts/fuzz.sh fuzz each target"
fi

step "soak, short (scripts/soak.sh --short: 30 s of churn and abuse against an optimised relay)"
scripts/soak.sh --short

step "done"
