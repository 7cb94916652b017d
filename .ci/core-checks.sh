#!/usr/bin/env bash
# Loom models and miri for the runtime-free core, and the core's suites with 1, 2
# and 32 shards per root (the main run uses the machine's count).
# Called by .ci/run; also runs on its own from any directory. Loom and miri build in
# target directories of their own, so they never contend for the default one.
set -euo pipefail
cd "$(dirname "$0")/.."

for shards in 1 2 32; do
  echo "== invariants and stress with WIND_DOWN_SHARDS=$shards"
  WIND_DOWN_SHARDS=$shards cargo test --all-features --test invariants --test stress
done

# The models are a package of their own (loom/): they need `--cfg loom` for the
# whole build, for event-listener's loom support, which the crate's dev-dependencies
# do not build under. With at most 4 threads in a model, 4 shards give every thread
# a shard of its own, the layout of a many-core machine (32 shards would only add
# 28 more atomics to every count that loom branches on, beyond what a run can end).
for shards in 1 2 4; do
  echo "== loom (LOOM_MAX_PREEMPTIONS=2, WIND_DOWN_SHARDS=$shards)"
  WIND_DOWN_SHARDS=$shards RUSTFLAGS="--cfg loom --cfg wind_down_loom" LOOM_MAX_PREEMPTIONS=2 \
    CARGO_TARGET_DIR=target/loom cargo test --release --manifest-path loom/Cargo.toml
done

echo "== miri (core: unit tests, invariants on the blocking executor, stress, ...)"
rustup +nightly component add miri rust-src
MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-disable-isolation" CARGO_TARGET_DIR=target/miri \
  cargo +nightly miri test --test invariants --test stress --test operability --test lifetime --lib
