#!/usr/bin/env bash
# Fuzzes each cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 60) from its
# committed corpus; new inputs go to a scratch directory, the corpus is only read. A
# crash fails the run with the target's last lines. Installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh                      60 s per target (plus a ~7 min sanitizer build)
#   FUZZ_SECONDS=600 scripts/fuzz.sh     a long run
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
# libFuzzer needs -Z flags; RUSTC_BOOTSTRAP lets the machine's one (stable)
# toolchain accept them for this step only. The relay's own build never sets it.
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

