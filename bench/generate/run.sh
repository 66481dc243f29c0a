#!/usr/bin/env bash
# CPU generation throughput: mario vs CTranslate2 float32 (the bar) and transformers, on the
# same model folders and prompts (../shared/bench/peers: StrategyQA dev prompts, greedy, 64
# forced new tokens, 2 threads, 1 warm-up + median of 3), run back to back on this machine.
# Writes bench/generate/results.md. Needs the peer venv and models of ../shared/bench/peers/README.md:
#   python3 -m venv target/peer-venv && target/peer-venv/bin/pip install torch transformers safetensors tokenizers sentencepiece ctranslate2
#   target/peer-venv/bin/python ../shared/bench/peers/make_models.py --models tiny,t5-small
# Run it on an otherwise idle machine (see the peers README, "Busy machine").
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${MODELS:-target/peer-models/tiny,target/peer-models/t5-small}
BATCHES=${BATCHES:-1,8,32}
ENGINES=${ENGINES:-ct2-float32,torch}
PY=${PY:-target/peer-venv/bin/python}
PEERS=../shared/bench/peers
OUT=bench/generate
cargo build --release -p mario-training --bin mario-train
MARIO_THREADS=2 target/release/mario-train --no-progress bench-generate --model "$MODELS" \
  --inputs "$PEERS/bench_prompts.jsonl" --batch-sizes "$BATCHES" --new-tokens 64 --warmup 1 --repeats 3 \
  --json-out "$OUT/mario.jsonl"
"$PY" "$PEERS/bench_peers.py" --models "$MODELS" --engines "$ENGINES" --batch-sizes "$BATCHES" \
  --prompts-file "$PEERS/bench_prompts.jsonl" --threads 2 --json-out target/bench-generate-peers.json > /dev/null
cp target/bench-generate-peers.json "$OUT/peers.json"
python3 - "$OUT" <<'PY' > "$OUT/results.md"
import json, sys, datetime, os
out = sys.argv[1]
mario = [json.loads(l) for l in open(os.path.join(out, "mario.jsonl")) if l.strip()]
peers = json.load(open(os.path.join(out, "peers.json")))
prow = peers["results"] if isinstance(peers, dict) else peers
def key(r):
    return (os.path.basename(os.path.normpath(r.get("model", ""))), r.get("batch"))
by = {}
for r in prow:
    by.setdefault(r.get("engine"), {})[key(r)] = r
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# Generation throughput on the CPU: mario vs CTranslate2 and transformers\n")
print(f"Run on {datetime.date.today()} on this machine ({cpu}, 2 threads each) with `bench/generate/run.sh`: "
      "the peer workload of `../shared/bench/peers` (StrategyQA dev prompts, batch B = the first B, greedy, "
      "64 forced new tokens, 1 warm-up + median of 3), the same model folders for every engine, "
      "run back to back. mario runs f32.\n")
engines = [e for e in ["ct2-float32", "torch", "ct2-int8"] if e in by]
print("| model | batch | mario tok/s | " + " | ".join(f"{e} tok/s" for e in engines) + " | mario / ct2-float32 |")
print("|---|---:|---:|" + "---:|" * len(engines) + "---:|")
for m in mario:
    k = (m["model"], m["batch"])
    cells = [f"{by[e][k]['tok_s']:.0f}" if k in by[e] else "-" for e in engines]
    ct2 = by.get("ct2-float32", {}).get(k)
    ratio = f"{m['tok_s'] / ct2['tok_s']:.2f}x" if ct2 else "-"
    print(f"| {m['model']} | {m['batch']} | {m['tok_s']:.0f} | " + " | ".join(cells) + f" | {ratio} |")
print("\nRaw rows: `mario.jsonl`, `peers.json`.")
PY
cat "$OUT/results.md"
