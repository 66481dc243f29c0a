#!/usr/bin/env python3
"""Plausibility of a world run's test outputs per question form, under one or more likelihood
scorers (training/reports/world/README.md, "A statement scorer").

usage: scripts/plausibility-by-form.py RUN_DIR SCORER_DIR [SCORER_DIR ...]
  RUN_DIR     a pipeline run on a generated world (data/world/world.json, test/sft.jsonl,
              test/mario.jsonl)
  SCORER_DIR  a likelihood scorer folder (config.json, model.safetensors, tokenizer.json,
              plausibility.json with `pooling: min`, and `prompt` when it reads one)
Prints, per scorer and per form, the mean score of SFT's and MaRio's test outputs, then MaRio -
SFT over all questions with its 95 % interval (normal approximation). With the run's own
scorer the overall numbers equal the pipeline report's test row. Needs torch, transformers and
tokenizers.
"""
import collections
import json
import math
import statistics
import sys

import torch
from tokenizers import Tokenizer
from transformers import T5ForConditionalGeneration

torch.set_num_threads(1)
run, scorers = sys.argv[1], sys.argv[2:]
if not scorers:
    sys.exit(__doc__)
world = json.load(open(f'{run}/data/world/world.json'))
form_of = {q['question']: q['kind'] for q in world['test']}
sft = [json.loads(l) for l in open(f'{run}/test/sft.jsonl')]
mario = [json.loads(l) for l in open(f'{run}/test/mario.jsonl')]

for d in scorers:
    cal = json.load(open(f'{d}/plausibility.json'))
    if cal.get('knowledge') or cal.get('pooling', 'min') != 'min':
        sys.exit(f'{d}: this script scores the question (or prompt) with min pooling; '
                 'for a scorer with knowledge statements or mean pooling use '
                 'scripts/stereotype-probe.py')
    tok = Tokenizer.from_file(f'{d}/tokenizer.json')
    model = T5ForConditionalGeneration.from_pretrained(d)
    model.eval()

    def score(question, output):
        question = cal.get('prompt') or question
        rationale = output.rsplit('So the answer is', 1)[0].strip()
        ids = tok.encode(rationale).ids[:-1]  # without </s>
        if not ids:
            return 0.0
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tok.encode(question).ids]),
                           decoder_input_ids=torch.tensor([[0] + ids[:-1]])).logits[0]
        lowest = logits.log_softmax(-1)[torch.arange(len(ids)), torch.tensor(ids)].min().item()
        return 1 / (1 + math.exp(-(lowest - cal['bias']) / cal['temperature']))

    by_form = collections.defaultdict(lambda: ([], []))
    for a, b in zip(sft, mario):
        f = form_of.get(a['question'], '?')
        by_form[f][0].append(score(a['question'], a['output']))
        by_form[f][1].append(score(b['question'], b['output']))
    print(f"{d} (reads {'the prompt ' + repr(cal['prompt']) if cal.get('prompt') else 'the question'})")
    print('| form | n | SFT | MaRio |\n|---|---:|---:|---:|')
    for f in sorted(by_form):
        a, b = by_form[f]
        print(f'| {f} | {len(a)} | {statistics.mean(a):.3f} | {statistics.mean(b):.3f} |')
    a = [x for f in by_form for x in by_form[f][0]]
    b = [x for f in by_form for x in by_form[f][1]]
    diff = [y - x for x, y in zip(a, b)]
    mu, se = statistics.mean(diff), statistics.stdev(diff) / len(diff) ** 0.5
    print(f'all: SFT {statistics.mean(a):.4f}, MaRio {statistics.mean(b):.4f}, '
          f'MaRio - SFT {mu:+.4f} [{mu - 1.96 * se:+.4f}, {mu + 1.96 * se:+.4f}]\n')
