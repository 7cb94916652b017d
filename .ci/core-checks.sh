#!/usr/bin/env bash
# Loom models and miri for the runtime-free core. Called by .ci/run; also runs on
# its own from any directory. Each tool builds in its own target directory under
# target/, so it never contends for the default one.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== loom (LOOM_MAX_PREEMPTIONS=2)"
RUSTFLAGS="--cfg wind_down_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
  cargo test --release --test loom

echo "== miri (core: unit tests, invariants on the blocking executor, stress)"
rustup +nightly component add miri rust-src
MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-disable-isolation" CARGO_TARGET_DIR=target/miri \
  cargo +nightly miri test --test invariants --test stress --test operability --test lifetime --lib
