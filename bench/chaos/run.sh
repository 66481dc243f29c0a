#!/usr/bin/env bash
# Chaos soak of mario-server (issue 18): the release server on the default model, for DURATION
# seconds (default 600) against bench/chaos/chaos.rs's mixed client (greedy and sampled
# requests, streams, hang-ups before the answer / mid-stream / mid-body, bursts past the queue
# limit, bad inputs, slow readers and senders, stalled headers and bodies, scoring). Reports
# requests by outcome, 5xx other than 503/504, wrong or lost answers (greedy answers vs the same
# question alone), the server's RSS at start / after a minute / at the end, the in-flight gauge
# and queue depth at the end, p50/p99 latency. Writes bench/chaos/RESULTS.md and results.json
# (OUT and JSON to write elsewhere); exits 1 when a required figure is not met.
#
#   bench/chaos/run.sh                 # 10 minutes
#   DURATION=60 bench/chaos/run.sh     # a short run
#   SERVER_NICE=5 bench/chaos/run.sh   # the server under `nice -n 5`
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-600}
DATA=${MARIO_DATA:-../shared/data/mario}
OUT=${OUT:-bench/chaos/RESULTS.md}
JSON=${JSON:-bench/chaos/results.json}
SERVER_NICE=${SERVER_NICE:-0}
HEADER_TIMEOUT=3
BODY_TIMEOUT=3
LOG=target/chaos-server.log
FLAGS=(--max-batch-size 32 --max-queue 64 --max-concurrent-requests 64 --request-timeout-s 30
  --header-read-timeout-s "$HEADER_TIMEOUT" --body-read-timeout-s "$BODY_TIMEOUT"
  --max-connections 256 --max-concurrent-scoring 2)

cargo build --release --bin mario-server --example chaos
mkdir -p target
nice -n "$SERVER_NICE" target/release/mario-server --port 0 "${FLAGS[@]}" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
ADDR=
for _ in $(seq 240); do
  ADDR=$(sed -n 's|.*listening on http://\([0-9.:]*\).*|\1|p' "$LOG" | head -1)
  [ -n "$ADDR" ] && curl -fs "http://$ADDR/ready" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.5
done
[ -n "$ADDR" ] || { echo "the server did not come up" >&2; cat "$LOG"; exit 1; }

# other jobs on the machine are named in the report
NOTE=
OTHERS=$(pgrep -c -f 'mario-train' || true)
if [ "${OTHERS:-0}" -gt 0 ]; then
  NOTE="Shared machine: $OTHERS other \`mario-train\` process(es) (single-threaded training runs) were running when the soak started"
  [ "$SERVER_NICE" != 0 ] && NOTE="$NOTE; the server ran under \`nice -n $SERVER_NICE\`"
  NOTE="$NOTE. Latencies are therefore higher than on an idle machine; the correctness and leak figures are not affected."
fi
CMD="DURATION=$DURATION${SERVER_NICE:+ SERVER_NICE=$SERVER_NICE} bench/chaos/run.sh"
[ "$SERVER_NICE" = 0 ] && CMD="DURATION=$DURATION bench/chaos/run.sh"

REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock bench/chaos bench/questions.rs 2>/dev/null || REV="$REV (with uncommitted changes)"

set +e
target/release/examples/chaos --addr "$ADDR" --server-pid "$SERVER" \
  --questions "$DATA/strategyqa/dev.jsonl" --seconds "$DURATION" \
  --header-read-timeout-s "$HEADER_TIMEOUT" --body-read-timeout-s "$BODY_TIMEOUT" \
  --server-log "$LOG" --out "$OUT" --json "$JSON" \
  --command="$CMD" --revision="$REV" --server-flags="${FLAGS[*]}" --note="$NOTE"
STATUS=$?
set -e
kill -0 $SERVER 2>/dev/null || { echo "the server died during the soak" >&2; STATUS=1; }
cat "$OUT"
exit $STATUS
