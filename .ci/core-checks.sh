#!/usr/bin/env bash
# loom models and miri for the runtime-free core. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== loom (LOOM_MAX_PREEMPTIONS=2)"
RUSTFLAGS="--cfg wind_down_loom" LOOM_MAX_PREEMPTIONS=2 LOOM_MAX_BRANCHES=10000 \
  CARGO_TARGET_DIR=target/loom cargo test --release --test loom_models

echo "== miri"
rustup +nightly component add miri rust-src
MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-disable-isolation" \
  CARGO_TARGET_DIR=target/miri cargo +nightly miri test --lib --test invariants --test stress
