#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on the GPU machine, on a machine without a GPU:
# mario-server and mario-train with the `cuda` feature, the `parity`, `batch` and `cache` test
# binaries with it, and the load client (no CUDA needed), stripped and packed into
# target/gpu/bin.tar.xz; plus the StrategyQA files the training check reads, in
# target/gpu/data/ (never committed). Uses ../shared/gpu/build_cuda.sh (CUDA 13.0 from PyPI
# wheels; the first build takes 25-30 minutes on 2 cores, later ones a few minutes).
#
# usage: scripts/gpu-build.sh            (CARGO_TARGET_DIR defaults to target/cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_CUDA:-../shared/gpu/build_cuda.sh}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target/cuda}
DATA=${MARIO_DATA:-../shared/data/mario}

"$BUILD" . --release --workspace --bins --features mario-training/cuda
CARGO_CMD=test "$BUILD" . --release --features cuda --no-run --test parity --test batch --test cache
CARGO_TARGET_DIR=target cargo build --release --example server_load

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp "$CARGO_TARGET_DIR/release/mario-server" "$CARGO_TARGET_DIR/release/mario-train" "$STAGE/"
for t in parity batch cache; do
  exe=$(ls -t "$CARGO_TARGET_DIR"/release/deps/$t-* | grep -v '\.d$' | head -n1)
  cp "$exe" "$STAGE/$t"
done
cp target/release/examples/server_load "$STAGE/"
strip "$STAGE"/*
mkdir -p target/gpu/data/strategyqa
tar -cJf target/gpu/bin.tar.xz -C "$STAGE" .
cp "$DATA"/strategyqa/{train,dev,teacher_gpt3_train}.jsonl target/gpu/data/strategyqa/
ls -la "$STAGE" target/gpu/bin.tar.xz
du -sh target/gpu
