#!/usr/bin/env bash
# Load test of mario-server with the default model: 1, 16 and 64 concurrent clients for 60 s
# each (closed loop, greedy, 64 new tokens, StrategyQA dev questions). Writes
# bench/server_load/results.md. Takes about 4 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${MARIO_DATA:-../shared/data/mario}
SECONDS_PER_LEVEL=${SECONDS_PER_LEVEL:-60}
PORT=${PORT:-18080}
cargo build --release --bin mario-server --example server_load
target/release/mario-server --port "$PORT" --max-batch-size 64 --max-concurrent-requests 256 \
  --max-queue 512 --max-batch-wait-ms 5 > target/server_load.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.5; done
target/release/examples/server_load --url "http://127.0.0.1:$PORT" \
  --questions "$DATA/strategyqa/dev.jsonl" --levels 1,16,64 --seconds "$SECONDS_PER_LEVEL" \
  | tee bench/server_load/results.jsonl
python3 - bench/server_load/results.jsonl "$SECONDS_PER_LEVEL" <<'PY' > bench/server_load/results.md
import json, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# mario-server under load\n")
print(f"Run on {datetime.date.today()} on this machine ({cpu}, 2 cores shared by the server and the "
      f"load generator) with `bench/server_load/run.sh`: the default model (`models/default`), "
      f"closed-loop clients sending one StrategyQA dev question each (64 distinct), greedy, "
      f"max_new_tokens 64, {sys.argv[2]} s per level. Every 200 response is compared with the "
      "answer the same question got alone (batch invariance).\n")
print("| clients | requests/s | generated tokens/s | p50 latency (s) | p99 latency (s) | errors | 5xx or lost | mismatched | speed-up vs 1 client |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['clients']} | {r['requests_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['p50_s']:.3f} | "
          f"{r['p99_s']:.3f} | {r['errors']} | {r['server_errors_or_lost']} | {r['mismatched']} | "
          f"{r['speedup_vs_first_level']:.2f}x |")
print("\nServer flags: `--max-batch-size 64 --max-concurrent-requests 256 --max-queue 512 "
      "--max-batch-wait-ms 5`. Raw rows: `results.jsonl`.")
PY
cat bench/server_load/results.md
