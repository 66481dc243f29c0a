#!/usr/bin/env python3
"""Per-token log-probabilities of a world run's SFT test rationales under a likelihood scorer,
for one question form (training/reports/world/README.md, "A statement scorer").

usage: scripts/token-log-probs.py SCORER_DIR RUN_DIR FORM [N]
  SCORER_DIR  a likelihood scorer folder (plausibility.json; its `prompt` is read when set)
  RUN_DIR     a pipeline run on a generated world (data/world/world.json, test/sft.jsonl)
  FORM        a question form (e.g. lives_cold); N: how many outputs to print (default 4)
Prints each rationale, then token:log-prob pairs, so one sees which token is the least likely.
Needs torch, transformers and tokenizers.
"""
import json
import sys

import torch
from tokenizers import Tokenizer
from transformers import T5ForConditionalGeneration

torch.set_num_threads(1)
if len(sys.argv) < 4:
    sys.exit(__doc__)
scorer, run, form = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 4
cal = json.load(open(f'{scorer}/plausibility.json'))
if cal.get('knowledge') or cal.get('pooling', 'min') != 'min':
    sys.exit(f'{scorer}: this script scores the question (or prompt) with min pooling; '
             'for a scorer with knowledge statements or mean pooling use '
             'scripts/stereotype-probe.py')
tok = Tokenizer.from_file(f'{scorer}/tokenizer.json')
model = T5ForConditionalGeneration.from_pretrained(scorer)
model.eval()
kind = {q['question']: q['kind'] for q in json.load(open(f'{run}/data/world/world.json'))['test']}
shown = 0
for line in open(f'{run}/test/sft.jsonl'):
    r = json.loads(line)
    if kind.get(r['question']) != form:
        continue
    rationale = r['output'].rsplit('So the answer is', 1)[0].strip()
    enc = tok.encode(rationale)
    ids = enc.ids[:-1]  # without </s>
    question = cal.get('prompt') or r['question']
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tok.encode(question).ids]),
                       decoder_input_ids=torch.tensor([[0] + ids[:-1]])).logits[0]
    lp = logits.log_softmax(-1)[torch.arange(len(ids)), torch.tensor(ids)].tolist()
    print(rationale, ' | ', ' '.join(f'{t}:{x:.1f}' for t, x in zip(enc.tokens, lp)))
    shown += 1
    if shown == n:
        break
