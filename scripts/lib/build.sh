# Sourced by scripts that run feedrelay's binaries (autobahn.sh, soak.sh): which cargo
# profile to build and run, and how to build it.
#
# FEEDRELAY_PROFILE: the profile (default release; scripts/test.sh uses `ci`, see
# Cargo.toml). FEEDRELAY_BUILT=1: the binaries under target/$profile were just built
# (scripts/test.sh, by `cargo test --all-targets`); use them rather than build again (a
# plain build resolves dependency features without the dev-dependencies and relinks).
profile="${FEEDRELAY_PROFILE:-release}"

build() { # binary-path cargo-build-args...
  local bin=$1
  shift
  if [ "${FEEDRELAY_BUILT:-}" = 1 ] && [ -x "$bin" ]; then return 0; fi
  cargo build --profile "$profile" --quiet "$@"
}
