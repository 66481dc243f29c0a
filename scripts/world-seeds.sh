#!/bin/bash
# world-seeds.sh CONFIG OUT_PREFIX JOBS SEED...: the whole pipeline of one world config on several
# seeds, JOBS at a time (one thread each), into OUT_PREFIX-sSEED/ with its log beside it
# (OUT_PREFIX-sSEED.log). Re-running the same command resumes every run: the pipeline skips
# finished stages and an unfinished training stage goes on from its last checkpoint. Then
# `scripts/world-acceptance.py OUT_PREFIX-s*` checks each line of the acceptance per seed.
# MARIO_TRAIN names the binary (default target/release/mario-train).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 CONFIG OUT_PREFIX JOBS SEED..." >&2
  exit 2
fi
config=$1; prefix=$2; jobs=$3; shift 3
bin=${MARIO_TRAIN:-target/release/mario-train}
[ -f "$config" ] || { echo "$config: no such config" >&2; exit 1; }
[ -x "$bin" ] || { echo "$bin: not built (cargo build --release -p mario-training)" >&2; exit 1; }
export bin config prefix
for seed in "$@"; do
  [[ $seed =~ ^[0-9]+$ ]] || { echo "$seed: a seed is a whole number" >&2; exit 2; }
done
# each seed is the script's $1, so the command line is never built from it
printf '%s\n' "$@" | xargs -P "$jobs" -n 1 sh -c \
  'out="$prefix-s$1"; "$bin" --threads 1 --no-progress pipeline --config "$config" --world-seed "$1" --out "$out" >> "$out.log" 2>&1 && echo "seed $1: done ($out/report.md)" || echo "seed $1: failed, see $out.log"' sh
