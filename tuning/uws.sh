#!/usr/bin/env bash
# Builds tuning/uws/uws_relay.cpp, the bench's client contract served by uWebSockets,
# and prints the binary's path, for `feedrelay bench --baseline uws=PATH` (and
# `UWS=PATH tuning/fanout.sh`):
#
#   uws=$(tuning/uws.sh /path/to/uWebSockets)
#
# uWebSockets is not on the registries this repository installs from (its npm builds
# need glibc 2.38; Debian 12 has 2.36), so its source is yours to provide: a checkout
# of uNetworking's uWebSockets with its uSockets submodule in `uSockets/`
# (`git clone --recursive`), or USOCKETS=/path/to/uSockets beside it. Built as its own
# Makefile builds it (epoll, no TLS, -O3 with LTO), plus -march=native, into
# target/uws/; the source tree is not written to. MARCH=x86-64-v3 builds for that
# level instead, as target/uws/uws_relay-x86-64-v3: valgrind has no AVX-512, so a
# native build on a CPU with it stops under callgrind with an illegal instruction
# (`UWS=... tuning/instructions.sh` wants this one). Needs g++ 12+ (C++20) and zlib. Our
# file builds clean with -Wall -Wextra; under LTO g++ may still warn inside
# uWebSockets' own headers (Utilities.h, -Wstringop-overflow), which are its code.
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:?usage: tuning/uws.sh /path/to/uWebSockets}"
usockets="${USOCKETS:-$src/uSockets}"
[ -f "$src/src/App.h" ] || { echo "uws.sh: $src/src/App.h: not a uWebSockets tree" >&2; exit 2; }
[ -f "$usockets/src/libusockets.h" ] || {
  echo "uws.sh: $usockets: no uSockets (clone with --recursive, or set USOCKETS)" >&2; exit 2; }
out=target/uws
march="${MARCH:-native}"
bin="$out/uws_relay"
[ "$march" = native ] || bin="$out/uws_relay-$march"
mkdir -p "$out/obj"
cflags=(-O3 -flto=auto "-march=$march" -DLIBUS_NO_SSL)
(cd "$out/obj" && rm -f ./*.o && gcc "${cflags[@]}" -std=c11 -I"$usockets/src" -c \
  "$usockets"/src/*.c "$usockets"/src/eventing/*.c "$usockets"/src/crypto/*.c \
  "$usockets"/src/io_uring/*.c)
g++ "${cflags[@]}" -std=c++20 -Wall -Wextra -isystem "$src/src" -isystem "$usockets/src" tuning/uws/uws_relay.cpp \
  "$out"/obj/*.o -lz -o "$bin" >&2
echo "$PWD/$bin"
