#!/usr/bin/env bash
# CPU generation throughput: mario vs CTranslate2 float32 (the bar), CTranslate2 int8 and
# transformers, on the same model folders and prompts (../shared/bench/peers: StrategyQA dev
# prompts, greedy, 64 forced new tokens, 2 threads, 1 warm-up + median of 3 per measurement).
# Runs are interleaved: each round measures every (model, batch) with mario and then with each
# peer, so a slow spell of the machine hits all engines alike; a row reports the median over
# rounds and the median of the per-round ratios mario / peer.
# Writes bench/generate/results.md (+ raw rows mario.jsonl, peers.jsonl).
# Needs the peer venv and models of ../shared/bench/peers/README.md:
#   python3 -m venv target/peer-venv && target/peer-venv/bin/pip install torch transformers safetensors tokenizers sentencepiece ctranslate2
#   target/peer-venv/bin/python ../shared/bench/peers/make_models.py --models tiny,t5-small
# Run it on an otherwise idle machine (see the peers README, "Busy machine").
# Knobs: MODELS, BATCHES, ENGINES, ROUNDS (default 3), DTYPES (mario's weight types, default
# fp32; DTYPES=fp32,bf16 adds a table of bf16 rows measured in the same rounds; on this CPU
# bf16 is 3.5-7x slower than fp32, see bf16.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${MODELS:-target/peer-models/tiny,target/peer-models/t5-small}
BATCHES=${BATCHES:-1,8,32}
ENGINES=${ENGINES:-ct2-float32,ct2-int8,torch}
ROUNDS=${ROUNDS:-3}
DTYPES=${DTYPES:-fp32}
PY=${PY:-target/peer-venv/bin/python}
PEERS=../shared/bench/peers
OUT=bench/generate
cargo build --release -p mario-training --bin mario-train
: > "$OUT/mario.jsonl"
: > "$OUT/peers.jsonl"
for round in $(seq "$ROUNDS"); do
  for model in ${MODELS//,/ }; do
    for b in ${BATCHES//,/ }; do
      echo "round $round: $(basename "$model") batch $b" >&2
      MARIO_THREADS=2 target/release/mario-train --no-progress bench-generate --model "$model" \
        --inputs "$PEERS/bench_prompts.jsonl" --batch-sizes "$b" --dtypes "$DTYPES" --new-tokens 64 --warmup 1 --repeats 3 \
        --json-out target/bench-generate-mario.jsonl > /dev/null
      sed "s/^{/{\"round\":$round,/" target/bench-generate-mario.jsonl >> "$OUT/mario.jsonl"
      "$PY" "$PEERS/bench_peers.py" --models "$model" --engines "$ENGINES" --batch-sizes "$b" \
        --prompts-file "$PEERS/bench_prompts.jsonl" --threads 2 --json-out target/bench-generate-peers.json > /dev/null
      "$PY" - "$round" target/bench-generate-peers.json >> "$OUT/peers.jsonl" <<'PY'
import json, sys
for r in json.load(open(sys.argv[2]))["results"]:
    r["round"] = int(sys.argv[1])
    print(json.dumps(r))
PY
    done
  done
done
python3 - "$OUT" "$ROUNDS" <<'PY' > "$OUT/results.md"
import json, sys, datetime, os, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def rows(f):
    return [json.loads(l) for l in open(os.path.join(out, f)) if l.strip()]
def name(m):
    return os.path.basename(os.path.normpath(m))
tok = {}  # (engine, model, batch) -> {round: tok_s}
for r in rows("mario.jsonl"):
    eng = "mario" if r.get("dtype", "fp32") == "fp32" else "mario-" + r["dtype"]
    tok.setdefault((eng, name(r["model"]), r["batch"]), {})[r["round"]] = r["tok_s"]
for r in rows("peers.jsonl"):
    tok.setdefault((r["engine"], name(r["model"]), r["batch"]), {})[r["round"]] = r["tok_s"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
engines = [e for e in ["ct2-float32", "ct2-int8", "torch"] if any(k[0] == e for k in tok)]
print("# Generation throughput on the CPU: mario vs CTranslate2 and transformers\n")
print(f"Run on {datetime.date.today()} on this machine ({cpu}, 2 cores, 2 threads each) with "
      f"`bench/generate/run.sh` ({rounds} interleaved rounds): the peer workload of `../shared/bench/peers` "
      "(StrategyQA dev prompts, batch B = the first B, greedy, 64 forced new tokens, 1 warm-up + median "
      "of 3 per measurement), the same model folders for every engine. mario runs f32. tok/s: median over "
      "rounds; ratio: median over rounds of mario / peer measured in the same round.\n")
head = "| model | batch | mario tok/s | " + " | ".join(f"{e} tok/s" for e in engines) + " | " + \
    " | ".join(f"mario / {e}" for e in engines) + " |"
print(head)
print("|---|---:|---:|" + "---:|" * (2 * len(engines)))
keys = sorted({(k[1], k[2]) for k in tok if k[0] == "mario"}, key=lambda k: (k[0] != "tiny", k[0], k[1]))
for m, b in keys:
    mar = tok[("mario", m, b)]
    cells, ratios = [], []
    for e in engines:
        peer = tok.get((e, m, b), {})
        cells.append(f"{statistics.median(peer.values()):.0f}" if peer else "-")
        common = [r for r in mar if r in peer]
        ratios.append(f"{statistics.median(mar[r] / peer[r] for r in common):.2f}x" if common else "-")
    print(f"| {m} | {b} | {statistics.median(mar.values()):.0f} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
variants = sorted({k[0] for k in tok if k[0].startswith("mario-")})
for v in variants:
    print(f"\n{v} (same rounds; bf16 parity tolerance: README, `parity_bf16_*`):\n")
    print("| model | batch | " + v + " tok/s | " + v + " / mario f32 | " + v + " / ct2-float32 |")
    print("|---|---:|---:|---:|---:|")
    for m, b in keys:
        var = tok.get((v, m, b), {})
        if not var:
            continue
        def ratio(other):
            common = [r for r in var if r in other]
            return f"{statistics.median(var[r] / other[r] for r in common):.2f}x" if common else "-"
        print(f"| {m} | {b} | {statistics.median(var.values()):.0f} | {ratio(tok[('mario', m, b)])} | "
              f"{ratio(tok.get(('ct2-float32', m, b), {}))} |")
print("\nRaw rows (one per engine, model, batch and round): `mario.jsonl`, `peers.jsonl`.")
PY
cat "$OUT/results.md"
