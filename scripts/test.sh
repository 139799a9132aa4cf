#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (a Python
# venv with `websockets`, Debian's chromium when missing), then lint, unit, property,
# loopback integration and interop tests, and one pass of each benchmark in test mode
# (criterion runs each benchmark once under `cargo test --all-targets`).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

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

step "io_uring"
sysctl kernel.io_uring_disabled 2>/dev/null || echo "kernel.io_uring_disabled not present"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo test --all-targets (unit, property, loopback, interop; benches once in test mode)"
cargo test --all-targets --quiet
