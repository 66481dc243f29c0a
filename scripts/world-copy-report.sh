#!/bin/bash
# world-copy-report.sh RUN DEST [plaus]: a pipeline run's report files into a committed report
# folder of training/reports/world/ (report.md, MaRio's curves, rounds and dev outputs, the sweep,
# the test split's outputs; with `plaus`, the plausibility scorer's report too). The models and
# the pool stay in RUN. The folder's config.toml is written by hand.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 RUN DEST [plaus]" >&2
  exit 2
fi
run=$1; dest=$2
[ -f "$run/report.md" ] || { echo "$run/report.md: missing (is the pipeline finished?)" >&2; exit 1; }
mkdir -p "$dest/mario/dev" "$dest/sweep" "$dest/test"
cp "$run/report.md" "$dest/"
cp "$run"/mario/{curves.png,mario.json,metrics.jsonl,rewards.png} "$dest/mario/"
cp "$run"/mario/dev/*.jsonl "$dest/mario/dev/"
cp "$run"/sweep/{sweep.json,sweep.md,sweep.png} "$dest/sweep/"
cp "$run"/test/{mario,sft}.jsonl "$dest/test/"
if [ "${3:-}" = plaus ]; then
  cp "$run/plausibility/scorer/plausibility.json" "$dest/plausibility.json"
  cp "$run/plausibility/report.md" "$dest/plausibility.md"
fi
