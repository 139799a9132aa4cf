#!/usr/bin/env bash
# A profile-guided build of feedrelay (PGO): the compiler lays out the code the relay
# runs per message together, and the code it does not apart, from counts taken while
# an instrumented build relays real load on this machine. It halves the relay's
# instruction-cache misses per delivery (tuning/RESULTS.md, issue #24, sixteenth pass).
#
#   scripts/pgo.sh                 # leaves target/pgo/release/feedrelay
#   TRAIN_SECONDS=10 scripts/pgo.sh
#
# Steps:
#   1. an instrumented build (target/pgo-gen, `-Cprofile-generate`);
#   2. training, each run short (TRAIN_SECONDS, 5 by default), loopback only: the
#      instrumented binary as `feedrelay bench --spawn` (the generator and the relay it
#      starts are both counted) with plain subscribers at 10 and at 100 per message,
#      then wss:// subscribers (certificates made by `mock-exchange
#      --tls-self-signed`), then permessage-deflate ones, then `demo --feed` (the relay
#      dialling two exchange lines and arbitrating them), then `demo --nats` (two
#      relays across a nats-server the demo starts) if one is on the PATH;
#   3. the counts merged with `llvm-profdata` (rustup's `llvm-tools` component, added
#      if missing: it must match rustc's LLVM, which Debian's does not);
#   4. the build with `-Cprofile-use` (target/pgo), the counts in
#      target/pgo-data/merged.profdata.
# Paths no training run takes are laid out as cold: wss:// feed lines, reloads (and
# NATS without a nats-server).
# They work the same; they may run a little slower than in a plain build.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${TRAIN_SECONDS:-5}"
root=$PWD/target
data=$root/pgo-data
rm -rf "$data"
mkdir -p "$data/raw" "$data/certs"

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  command -v rustup >/dev/null || {
    echo "pgo.sh: needs llvm-profdata matching rustc's LLVM: rustup's llvm-tools component (no rustup here)" >&2
    exit 2
  }
  echo "pgo.sh: adding rustup's llvm-tools (llvm-profdata matching rustc's LLVM)" >&2
  rustup component add llvm-tools
fi
[ -x "$profdata" ] || { echo "pgo.sh: no llvm-profdata at $profdata" >&2; exit 2; }

echo "== 1. instrumented build (target/pgo-gen)" >&2
RUSTFLAGS="-Cprofile-generate=$data/raw" cargo build --release --quiet --target-dir "$root/pgo-gen"
gen=$root/pgo-gen/release/feedrelay

echo "== 2. training, ${secs} s a run" >&2
run=(--duration "$secs" --warmup 1 --rounds 1 --workers 1)
"$gen" bench --spawn --rate 10000 --subs 10 "${run[@]}" >"$data/plain-10.txt"
"$gen" bench --spawn --rate 2000 --subs 100 "${run[@]}" >"$data/plain-100.txt"
# Certificates for the wss:// run: the mock exchange makes them, then is stopped.
"$gen" mock-exchange --listen 127.0.0.1:0 --tls-self-signed "$data/certs" >"$data/certs.log" 2>&1 &
mock=$!
for _ in $(seq 100); do
  [ -s "$data/certs/key.pem" ] && [ -s "$data/certs/ca.pem" ] && break
  sleep 0.1
done
kill -INT "$mock" 2>/dev/null || true
wait "$mock" || true
[ -s "$data/certs/key.pem" ] || { echo "pgo.sh: no certificates (see $data/certs.log)" >&2; exit 1; }
printf 'tls_cert_file = "certs/cert.pem"\ntls_key_file = "certs/key.pem"\n' >"$data/tls.toml"
printf '[compression]\nenabled = true\n' >"$data/deflate.toml"
"$gen" bench --spawn --relay-config "tls=$data/tls.toml" --ca "$data/certs/ca.pem" \
  --rate 5000 --subs 10 "${run[@]}" >"$data/tls.txt"
"$gen" bench --spawn --relay-config "deflate=$data/deflate.toml" --deflate --payload book \
  --rate 5000 --subs 10 "${run[@]}" >"$data/deflate.txt"
"$gen" demo --feed --duration "$secs" --workers 1 --hlog "$data/demo.hlog" >"$data/demo.txt" 2>&1
# Across NATS too, where a nats-server is on the PATH (the demo starts its own);
# without one that path stays cold, and the script says so.
if command -v nats-server >/dev/null; then
  "$gen" demo --nats --duration "$secs" --workers 1 --hlog "$data/nats.hlog" >"$data/nats.txt" 2>&1
else
  echo "pgo.sh: no nats-server on the PATH: the NATS path is not trained" >&2
fi
ls "$data"/raw/*.profraw >/dev/null 2>&1 || { echo "pgo.sh: training left no counts" >&2; exit 1; }

echo "== 3. merging the counts" >&2
"$profdata" merge -o "$data/merged.profdata" "$data/raw"

echo "== 4. the build with the counts (target/pgo)" >&2
RUSTFLAGS="-Cprofile-use=$data/merged.profdata" cargo build --release --quiet --target-dir "$root/pgo"
echo "$root/pgo/release/feedrelay"
