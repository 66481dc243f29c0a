#!/bin/bash
# usage: run2.sh NAME DATA TOKENIZER ARCH -- sft flags
N=$1; D=$2; TOKF=$3; A=$4; shift 4
T=${BIN:-/tmp/exp/bin/mario-train}
R=/tmp/exp/runs/$N
mkdir -p $R; cp $TOKF $R/tokenizer.json
cd /work/main
[ -d $R/init ] || $T init --tokenizer $R/tokenizer.json --arch $A --out $R/init > /dev/null
$T --no-progress --threads ${THREADS:-1} sft --model $R/init --train $D/train.jsonl --dev $D/dev.jsonl --out $R/sft --batch-size 16 --log-every 50 --eval-limit 200 --max-new-tokens 24 "$@" > $R/log.txt 2>&1
