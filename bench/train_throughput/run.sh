#!/usr/bin/env bash
# Training throughput: mario vs transformers (PyTorch) on the same weights, batch and lengths,
# 2 threads each, runs interleaved; SFT updates only (`mario-train bench-train` and
# torch_train.py also time MaRio updates, and on CUDA: scripts/gpu-check.sh).
# Writes bench/train_throughput/results.md.
# Needs the peer venv and models of ../shared/bench/peers/README.md:
#   python3 -m venv target/peer-venv && target/peer-venv/bin/pip install torch transformers safetensors tokenizers
#   target/peer-venv/bin/python ../shared/bench/peers/make_models.py --models tiny,t5-small
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${MODELS:-"target/peer-models/tiny target/peer-models/t5-small"}
ROUNDS=${ROUNDS:-3}
PY=${PY:-target/peer-venv/bin/python}
OUT=bench/train_throughput/results.jsonl
cargo build --release -p mario-training --bin mario-train
: > "$OUT"
for round in $(seq "$ROUNDS"); do
  for m in $MODELS; do
    target/release/mario-train --threads 2 --no-progress bench-train --model "$m" --steps sft \
      --batch-sizes 16 --src 32 --tgt 48 --repeats 10 --json-out "$OUT.part" > /dev/null
    cat "$OUT.part" >> "$OUT" && rm "$OUT.part"
    "$PY" bench/train_throughput/torch_train.py --model "$m" --steps sft --batch-sizes 16 \
      --src 32 --tgt 48 --repeats 10 --threads 2 | tee -a "$OUT"
  done
done
python3 - "$OUT" <<'PY' > bench/train_throughput/results.md
import json, sys, statistics, subprocess, datetime, platform
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
models = sorted({r["model"] for r in rows}, key=lambda m: [r["params"] for r in rows if r["model"] == m][0])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print("# Training throughput: mario vs transformers (CPU)\n")
print(f"Run on {datetime.date.today()} on this machine ({cpu}, 2 threads each), {len(rows)//(2*len(models))} rounds, with "
      "`bench/train_throughput/run.sh`: synthetic batches of 16 examples x (32 encoder + 48 target) "
      "tokens, one step = forward + backward + clip + AdamW, dropout 0.1, median of 10 steps after 2 "
      "warm-up steps, rounds interleaved; tokens/s: median over rounds; mario / transformers: median "
      "of the per-round ratios (each round runs mario and then transformers back to back).\n")
print("| model | params | mario tokens/s | transformers tokens/s | mario / transformers | per-round ratios |")
print("|---|---:|---:|---:|---:|---|")
for m in models:
    mar = statistics.median(r["tokens_per_s"] for r in rows if r["model"] == m and r["engine"] == "mario")
    tor = statistics.median(r["tokens_per_s"] for r in rows if r["model"] == m and r["engine"] == "torch")
    p = [r["params"] for r in rows if r["model"] == m][0]
    # rows come in run order (per round and model: mario, then transformers): pair them by round
    mr = [r["tokens_per_s"] for r in rows if r["model"] == m and r["engine"] == "mario"]
    tr = [r["tokens_per_s"] for r in rows if r["model"] == m and r["engine"] == "torch"]
    ratios = [a / b for a, b in zip(mr, tr)]
    print(f"| {m} | {p/1e6:.1f}M | {mar:.0f} | {tor:.0f} | {statistics.median(ratios):.2f} | "
          + ", ".join(f"{x:.2f}" for x in ratios) + " |")
tv = next((r.get("torch") for r in rows if r.get("torch")), "?")
print(f"\ntorch {tv}. Raw rows: `results.jsonl`.")
PY
cat bench/train_throughput/results.md
