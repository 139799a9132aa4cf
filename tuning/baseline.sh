#!/usr/bin/env bash
# Builds feedrelay (release) and the baseline relay (benches/baseline_relay.rs) and
# prints the baseline's binary path, for the scripts that compare the two:
#   base=$(tuning/baseline.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo bench --no-run --quiet --bench baseline_relay 2>/dev/null
ls -t target/release/deps/baseline_relay-* | grep -v '\.d$' | sed -n 1p
