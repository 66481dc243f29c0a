#!/usr/bin/env bash
# The GPU check (issue 6), one script for the H100 machine, about 6 minutes:
#   1. engine parity on CUDA (f32 within 1e-4 of the transformers fixtures, bf16 within its
#      stated tolerance), batch invariance and cached = uncached decoding: the `parity`,
#      `batch` and `cache` test binaries with MARIO_TEST_DEVICE=cuda;
#   2. generation throughput of mario and of transformers on the SAME random-init folders
#      (t5-small, t5-base, t5-large, vocabulary 32128) and the same inputs (32 random ids per
#      row), greedy, 64 forced new tokens, batch 1/8/32/128, bf16 and fp32;
#   3. a short SFT run and a short MaRio run on the GPU (t5-small architecture, StrategyQA),
#      steps/s and tokens/s from their metrics.jsonl;
#   4. training throughput of mario and of transformers (torch AdamW) on the same folders
#      (t5-base, t5-large): the SFT update and the MaRio update (policy forward/backward,
#      frozen reference forward, KL), batch 4 and 32, fp32 and bf16 (mixed precision: mario's
#      bf16 casts of f32 variables, torch.autocast) (`mario-train bench-train`,
#      bench/train_throughput/torch_train.py);
#   5. mario-server on the GPU under load (bench/server_load's client, 1/16/64 clients);
# and writes one markdown table, $OUT/gpu.md (with the raw rows beside it).
# GPU_CHECK_STAGES picks stages (default parity,generate,train,trainbench,server); trainbench
# needs the folders that generate makes (it makes them itself when generate is left out).
#
# Binaries are built here with the cuda feature and carried (see README, "GPU"):
#   scripts/gpu-build.sh        # -> target/gpu/{bin.tar.xz,data/}
# then, on the GPU machine, from the repository root:
#   scripts/gpu-check.sh
# Dry run on a CPU (tiny model, small batches, a few steps; checks the plumbing only):
#   GPU_CHECK_SMALL=1 GPU_CHECK_DEVICE=cpu GPU_CHECK_BIN=target/release \
#     GPU_CHECK_TESTS=target/release/deps GPU_CHECK_LOAD=target/release/examples/server_load PYTHON=target/peer-venv/bin/python scripts/gpu-check.sh
#
# env: OUT (results folder, default target/gpu-check), GPU_CHECK_BIN (folder with mario-server,
# mario-train, server_load, parity, batch, cache; default: unpacked from target/gpu/bin.tar.xz),
# GPU_CHECK_DATA (data folder with strategyqa/, default target/gpu/data), GPU_CHECK_DEVICE
# (cuda), GPU_CHECK_SMALL (1 = dry-run sizes), PYTHON (python3 with torch and transformers),
# GPU_CHECK_STAGES (see above).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/target/gpu-check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${GPU_CHECK_WORK:-/tmp/mario-gpu-check}
rm -rf "$WORK" && mkdir -p "$WORK"
DEVICE=${GPU_CHECK_DEVICE:-cuda}
DATA=${GPU_CHECK_DATA:-$ROOT/target/gpu/data}
PY=${PYTHON:-python3}
STAGES=${GPU_CHECK_STAGES:-parity,generate,train,trainbench,server}
stage() { [[ ",$STAGES," == *",$1,"* ]]; }
LOG=$OUT/log.txt
: > "$LOG"
log() { echo "[gpu-check $(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

if [ "${GPU_CHECK_SMALL:-0}" = 1 ]; then
  ARCHS=tiny; BATCHES=1,8; NEW=8; DTYPES=fp32,bf16; WARMUP=0; REPEATS=1
  SFT_STEPS=10; MARIO_STEPS=20; MARIO_Q=8; LEVELS=1,4; LEVEL_S=3; TRAIN_ARCH=tiny; TRAIN_BATCH=4
  BENCH_ARCHS=tiny; BENCH_BATCHES=2,4; BENCH_REPEATS=2
else
  ARCHS=t5-small,t5-base,t5-large; BATCHES=1,8,32,128; NEW=64; DTYPES=bf16,fp32; WARMUP=1; REPEATS=3
  SFT_STEPS=120; MARIO_STEPS=60; MARIO_Q=128; LEVELS=1,16,64; LEVEL_S=15; TRAIN_ARCH=small; TRAIN_BATCH=32
  BENCH_ARCHS=t5-base,t5-large; BENCH_BATCHES=4,32; BENCH_REPEATS=10
fi

# --- binaries and the CUDA libraries ------------------------------------------------------
BIN=${GPU_CHECK_BIN:-}
if [ -z "$BIN" ]; then
  BIN=$WORK/bin && mkdir -p "$BIN"
  tar -xJf target/gpu/bin.tar.xz -C "$BIN" || { log "cannot unpack target/gpu/bin.tar.xz"; exit 1; }
fi
TESTS=${GPU_CHECK_TESTS:-$BIN}
if [ "$DEVICE" = cuda ]; then
  # the CUDA 13 libraries of the machine's PyTorch environment and the driver (as
  # ../shared/gpu/run_on_gpu.sh finds them)
  LIBDIRS=$(find -L /opt/torch/.venv /usr/local/nvidia /usr/local/cuda \( -name libcudart.so.13 -o \
    -name libcublas.so.13 -o -name libcublasLt.so.13 -o -name libcurand.so.10 -o -name libnvrtc.so.13 \) \
    -not -path '*/stubs/*' 2>/dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
  export LD_LIBRARY_PATH="$LIBDIRS:/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$WORK/card.txt" 2>&1
else
  grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 > "$WORK/card.txt"
fi
CARD=$(head -n1 "$WORK/card.txt" | xargs)
log "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
log "device $DEVICE: $CARD; binaries in $BIN"
SECONDS=0

# --- the table (rewritten after every stage, so a run cut short still reports) ---------------
write_table() {
  "$PY" - "$OUT" "$CARD" "$DEVICE" "$SECONDS" "$BF16" "$(printf "$PARITY_ROWS")" > "$OUT/gpu.md" <<'PY'
import json, sys, os, datetime
out, card, device, secs, bf16, parity = sys.argv[1:7]
def rows(name):
    p = os.path.join(out, name)
    return [json.loads(l) for l in open(p) if l.strip()] if os.path.exists(p) else []
print(f"# mario on {device}: {card}\n")
print(f"Run on {datetime.date.today()} with `scripts/gpu-check.sh` ({secs} s).\n")
print("## Parity (tests on the device)\n\n| test binary | result |\n|---|---|")
print(parity)
print(f"\nbf16 readings: {bf16 or 'none'}\n")
print("## Generation: mario vs transformers, same folders and inputs, 64 forced new tokens\n")
print("| model | dtype | batch | transformers tok/s | mario tok/s | ratio | transformers ms/step | mario ms/step | lengths ok |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|")
torch = {(r["model"], r["dtype"], r["batch"]): r for r in rows("torch_generate.jsonl")}
for m in rows("mario_generate.jsonl"):
    t = torch.get((m["model"], m["dtype"], m["batch"]))
    ratio = f"{m['tok_s'] / t['tok_s']:.2f}x" if t else "-"
    print(f"| {m['model']} | {m['dtype']} | {m['batch']} | {t['tok_s']:.0f} | {m['tok_s']:.0f} | {ratio} | "
          f"{t['ms_per_step']:.2f} | {m['ms_per_step']:.2f} | {m['generated_lengths_ok'] and t['generated_lengths_ok']} |"
          if t else f"| {m['model']} | {m['dtype']} | {m['batch']} | - | {m['tok_s']:.0f} | - | - | {m['ms_per_step']:.2f} | {m['generated_lengths_ok']} |")
print("\n## Training on the device\n\n| run | updates | updates/s | tokens/s |\n|---|---:|---:|---:|")
sft = [r for r in rows("sft_metrics.jsonl") if r.get("kind") == "train"]
if sft:
    last = sft[-1]
    print(f"| SFT | {last['step']} | {last['step'] / last['elapsed_s']:.2f} | "
          f"{sum(r['tokens_per_s'] for r in sft[1:] or sft) / len(sft[1:] or sft):.0f} |")
mario = [r for r in rows("mario_metrics.jsonl") if r.get("kind") == "train"]
w = [r for r in mario[1:] or mario if "updates_per_s" in r]
if w:
    print(f"| MaRio (policy + reference forward, KL) | {mario[-1]['step']} | "
          f"{sum(r['updates_per_s'] for r in w) / len(w):.2f} | {sum(r['tokens_per_s'] for r in w) / len(w):.0f} |")
mt, tt = rows("mario_train.jsonl"), rows("torch_train.jsonl")
if mt or tt:
    print("\n## Training throughput: mario vs transformers (torch AdamW), same folders, synthetic batches\n")
    print("One update = forward (MaRio: policy with 4 control tokens + frozen reference) + backward + clip + "
          "AdamW; 32 encoder + 48 target tokens per example; median of the timed updates. bf16 is mixed "
          "precision on both sides (f32 variables and AdamW; mario: bf16 casts rebuilt every update, "
          "transformers: torch.autocast).\n")
    print("| model | step | batch | dtype | transformers tokens/s | mario tokens/s | mario / transformers | transformers updates/s | mario updates/s |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    mi = {(r["model"], r["step"], r["batch"], r["dtype"]): r for r in mt}
    for t in tt:
        m = mi.get((t["model"], t["step"], t["batch"], t["dtype"]))
        print(f"| {t['model']} | {t['step']} | {t['batch']} | {t['dtype']} | {t['tokens_per_s']:.0f} | "
              + (f"{m['tokens_per_s']:.0f} | {m['tokens_per_s'] / t['tokens_per_s']:.2f}x | {t['updates_per_s']:.2f} | {m['updates_per_s']:.2f} |"
                 if m else f"- | - | {t['updates_per_s']:.2f} | - |"))
    print("\nmario's phases (median s per update): " + "; ".join(
        f"{r['model']} {r['dtype']} {r['step']} b{r['batch']}: forward {r['forward_s']:.4f}, backward {r['backward_s']:.4f}, "
        f"optimizer {r['optimizer_s']:.4f}" for r in mt))
    # the paper's recipe: StrategyQA SFT 25 epochs at batch 4 (34,325 updates), MaRio 50,000
    # updates at batch 4 (design/method.md); sampling, scoring and evaluation not counted
    def ups(rs, model, step, dtype):
        r = [x for x in rs if x["model"] == model and x["step"] == step and x["batch"] == 4
             and x["dtype"] == dtype]
        return r[0]["updates_per_s"] if r else None
    print("\nThe paper's recipe (StrategyQA: 34,325 SFT updates + 50,000 MaRio updates, batch 4; "
          "sampling and scoring not counted), projected from the batch-4 rows, hours:\n")
    print("| model | mario fp32 | transformers fp32 | mario bf16 | transformers bf16 |\n|---|---:|---:|---:|---:|")
    for model in sorted({r["model"] for r in mt + tt}):
        def hours(rs, dtype):
            a, b = ups(rs, model, "sft", dtype), ups(rs, model, "mario", dtype)
            return f"{(34325 / a + 50000 / b) / 3600:.1f}" if a and b else "-"
        print(f"| {model} | {hours(mt, 'fp32')} | {hours(tt, 'fp32')} | {hours(mt, 'bf16')} | {hours(tt, 'bf16')} |")
print("\n## Server under load (models/default, greedy, 64 new tokens)\n")
print("| clients | requests/s | generated tokens/s | p50 latency (s) | p99 latency (s) | errors | 5xx or lost | mismatched |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows("server_load.jsonl"):
    print(f"| {r['clients']} | {r['requests_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['p50_s']:.3f} | "
          f"{r['p99_s']:.3f} | {r['errors']} | {r['server_errors_or_lost']} | {r['mismatched']} |")
PY
}

# --- 1. parity, batch invariance, cache -------------------------------------------------------
PARITY_ROWS=""; BF16=""
if stage parity; then
for t in parity batch cache; do
  exe=$(ls "$TESTS"/$t 2>/dev/null || ls -t "$TESTS"/$t-* 2>/dev/null | grep -v '\.d$' | head -n1)
  if [ -z "$exe" ]; then log "no $t test binary"; PARITY_ROWS+="| $t | missing |\n"; continue; fi
  MARIO_TEST_DEVICE=$DEVICE MARIO_FIXTURES=$ROOT/tests/fixtures timeout 300 "$exe" --test-threads 1 --nocapture \
    > "$WORK/$t.txt" 2>&1
  rc=$?
  cat "$WORK/$t.txt" >> "$OUT/parity.txt"
  summary=$(grep -E "^test result" "$WORK/$t.txt" | tail -n1)
  PARITY_ROWS+="| $t | ${summary:-exit $rc} |\n"
  log "$t: ${summary:-exit $rc}"
done
BF16=$(grep -E "bf16 (relative error|argmax agreement)" "$OUT/parity.txt" | sort -u | tr '\n' ';')
write_table

fi

# --- 2. generation: transformers and mario on the same folders ------------------------------
if stage generate; then
log "making models $ARCHS"
timeout 150 "$PY" scripts/gpu_peer.py make --out "$WORK/models" --archs "$ARCHS" >> "$LOG" 2>&1 || log "make failed"
MODELS=$(echo "$ARCHS" | tr ',' '\n' | sed "s|^|$WORK/models/|" | paste -sd,)
log "transformers generate"
timeout 200 "$PY" scripts/gpu_peer.py time --models "$MODELS" --inputs "$WORK/models/inputs.jsonl" \
  --dtypes "$DTYPES" --batch-sizes "$BATCHES" --new-tokens "$NEW" --warmup "$WARMUP" \
  --repeats "$REPEATS" --device "$DEVICE" > "$OUT/torch_generate.jsonl" 2>> "$LOG" || log "torch timing failed"
log "mario generate"
timeout 200 "$BIN/mario-train" --no-progress bench-generate --model "$MODELS" \
  --inputs "$WORK/models/inputs.jsonl" --dtypes "$DTYPES" --batch-sizes "$BATCHES" --new-tokens "$NEW" \
  --warmup "$WARMUP" --repeats "$REPEATS" --device "$DEVICE" --json-out "$OUT/mario_generate.jsonl" \
  >> "$LOG" 2>&1 || log "mario timing failed"
write_table

fi

# --- 3. training ----------------------------------------------------------------------------
if stage train; then
T=$WORK/train && mkdir -p "$T"
cat > "$T/config.toml" <<EOF
[data]
datasets = ["strategyqa"]
[tokenizer]
vocab_size = 8000
[init]
arch = "$TRAIN_ARCH"
seed = 0
[sft]
lr = 1e-3
warmup_steps = 20
epochs = 1
batch_size = $TRAIN_BATCH
eval_every = 0
log_every = 5
eval_limit = 16
max_new_tokens = 48
[eval]
max_new_tokens = 48
[mario]
rewards = ["accuracy", "diversity"]
bins = 5
rounds = 1
steps_per_round = $MARIO_STEPS
questions_per_round = $MARIO_Q
max_new_tokens = 48
batch_size = $TRAIN_BATCH
eval_limit = 16
selection = "dev_reward_mean"
EOF
export MARIO_DATA=$DATA
log "training: tokenizer, init ($TRAIN_ARCH), SFT $SFT_STEPS steps, MaRio $MARIO_STEPS steps"
{
  "$BIN/mario-train" --no-progress tokenizer --config "$T/config.toml" --out "$T/tokenizer.json" &&
  "$BIN/mario-train" --no-progress init --config "$T/config.toml" --tokenizer "$T/tokenizer.json" --out "$T/init" &&
  timeout 120 "$BIN/mario-train" --no-progress sft --config "$T/config.toml" --model "$T/init" --out "$T/sft" \
    --stop-after "$SFT_STEPS" --device "$DEVICE" &&
  timeout 120 "$BIN/mario-train" --no-progress mario --config "$T/config.toml" --sft "$T/sft/last" \
    --out "$T/mario" --device "$DEVICE"
} >> "$LOG" 2>&1 || log "training failed (see log.txt)"
cp "$T/sft/metrics.jsonl" "$OUT/sft_metrics.jsonl" 2>/dev/null
cp "$T/mario/metrics.jsonl" "$OUT/mario_metrics.jsonl" 2>/dev/null
write_table

fi

# --- 4. training throughput: transformers and mario on the same folders ---------------------
if stage trainbench; then
  BENCH_MODELS=$(echo "$BENCH_ARCHS" | tr ',' '\n' | sed "s|^|$WORK/models/|" | paste -sd,)
  if [ ! -f "$WORK/models/$(echo "$BENCH_ARCHS" | cut -d, -f1)/config.json" ]; then
    timeout 150 "$PY" scripts/gpu_peer.py make --out "$WORK/models" --archs "$BENCH_ARCHS" >> "$LOG" 2>&1 || log "make failed"
  fi
  log "transformers training updates ($BENCH_ARCHS, batch $BENCH_BATCHES)"
  : > "$OUT/torch_train.jsonl"  # torch_train.py appends
  timeout 240 "$PY" bench/train_throughput/torch_train.py --model "$BENCH_MODELS" --steps sft,mario \
    --batch-sizes "$BENCH_BATCHES" --repeats "$BENCH_REPEATS" --dtypes fp32,bf16 --device "$DEVICE" \
    --json-out "$OUT/torch_train.jsonl" >> "$LOG" 2>&1 || log "torch training timing failed"
  write_table
  log "mario training updates"
  timeout 240 "$BIN/mario-train" --no-progress bench-train --model "$BENCH_MODELS" --steps sft,mario \
    --batch-sizes "$BENCH_BATCHES" --repeats "$BENCH_REPEATS" --dtypes fp32,bf16 --device "$DEVICE" \
    --json-out "$OUT/mario_train.jsonl" >> "$LOG" 2>&1 || log "mario training timing failed"
  write_table
fi

# --- 5. the server under load ----------------------------------------------------------------
if stage server; then
log "server under load ($LEVELS clients, $LEVEL_S s each)"
PORT=18080
"$BIN/mario-server" --model models/default --device "$DEVICE" --port $PORT --max-batch-size 64 \
  --max-concurrent-requests 256 --max-queue 512 --max-batch-wait-ms 5 > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 120); do
  "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/ready', timeout=2)" \
    > /dev/null 2>&1 && break
  sleep 0.5
done
timeout 100 "${GPU_CHECK_LOAD:-$BIN/server_load}" --url "http://127.0.0.1:$PORT" --questions "$DATA/strategyqa/dev.jsonl" \
  --levels "$LEVELS" --seconds "$LEVEL_S" > "$OUT/server_load.jsonl" 2>> "$LOG" || log "load test failed"
kill $SERVER 2> /dev/null; wait $SERVER 2> /dev/null
tail -n 5 "$WORK/server.log" >> "$LOG"
write_table

fi

log "done in $SECONDS s: $OUT/gpu.md"
cat "$OUT/gpu.md"
