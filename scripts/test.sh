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
"$FEEDRELAY_CHROMIUM" --version 2>/dev/null | head -1

step "nats-server (the NATS backbone's tests start real servers)"
if ! command -v nats-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
fi
export FEEDRELAY_NATS_SERVER="$(command -v nats-server)"
"$FEEDRELAY_NATS_SERVER" --version

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
"$FEEDRELAY_PROMTOOL" --version 2>&1 | head -1

step "io_uring"
sysctl kernel.io_uring_disabled 2>/dev/null || echo "kernel.io_uring_disabled not present"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo test --all-targets (unit, property, loopback, interop; benches once in test mode)"
cargo test --all-targets --quiet

step "Autobahn|Testsuite cases 1-11 against feedrelay echo (scripts/autobahn.sh)"
scripts/autobahn.sh

step "Autobahn|Testsuite, the client role: the same cases against the feed lines' client (scripts/autobahn.sh --client)"
scripts/autobahn.sh --client

# Fuzzing needs libFuzzer's -Z flags; RUSTC_BOOTSTRAP lets the machine's one (stable)
# toolchain accept them for this step only. The relay's own build never sets it.
step "cargo fuzz: each target for ${FUZZ_SECONDS:=10} s from its committed corpus (fuzz/; FUZZ_SECONDS=600 for a long run)"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
fuzz_dir="$PWD/target/fuzz"
(cd fuzz && cargo fuzz build -O --target-dir "$fuzz_dir")
for target in $(cd fuzz && cargo fuzz list); do
  found=$(mktemp -d)
  # New inputs go to the scratch directory; the committed corpus is only read.
  if ! (cd fuzz && cargo fuzz run -O --target-dir "$fuzz_dir" "$target" "$found" "corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 >"$found.log" 2>&1); then
    echo "fuzz target $target failed:"; tail -40 "$found.log"; exit 1
  fi
  printf '%-14s %s\n' "$target" "$(grep -E '^stat::number_of_executed_units' "$found.log" | awk '{print $2 " execs"}')"
  rm -rf "$found" "$found.log"
done
unset RUSTC_BOOTSTRAP

step "soak, short (scripts/soak.sh --short: 30 s of churn and abuse against a release relay)"
scripts/soak.sh --short

step "done"
