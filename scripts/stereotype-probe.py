#!/usr/bin/env python3
"""Does a likelihood scorer prefer a creature's true place to a false place of the same climate?
(training/reports/world/README.md, "A scorer that reads the knowledge records")

usage: scripts/stereotype-probe.py [--retrieve N] WORLD_DIR SCORER_DIR [SCORER_DIR ...]
  --retrieve N  put before each question the statements of the world's knowledge records
              (knowledge.jsonl) that share a word with it, for every word found in at most N
              distinct statements (the entities' names), as `knowledge_context = N` does; a
              scorer whose plausibility.json has `knowledge` reads its own statements and N
              without this flag
  WORLD_DIR   a generated world (world.json)
  SCORER_DIR  a likelihood scorer folder (config.json, model.safetensors, tokenizer.json,
              plausibility.json with `pooling`, and `prompt` when it reads one)

For every `lives_cold` / `lives_hot` question of the train, dev and test splits it scores the
rationale that states the creature's true place ("A X lives in Z. Z is cold.") and, for every
other place of the same climate P, the same rationale with P: the answer stays right, only the
first fact is false, as in the teacher's stereotype habit. Prints per split and form the share
of (true, false) pairs in which the true rationale scores higher (ties count half: 0.5 is
chance) and the same share against the stereotype place alone (the first place of that climate
in the knowledge base's order, which the habit names). Needs torch, transformers and tokenizers.
"""
import collections
import json
import re
import sys

import torch
from tokenizers import Tokenizer
from transformers import T5ForConditionalGeneration

torch.set_num_threads(1)
args = sys.argv[1:]
flag_retrieve = 0
if args[:1] == ['--retrieve']:
    flag_retrieve, args = int(args[1]), args[2:]
retrieve = flag_retrieve
world_dir, scorers = args[0], args[1:]
if not scorers:
    sys.exit(__doc__)
world = json.load(open(f'{world_dir}/world.json'))
climate = {f['subject']: f['value'] for f in world['kb']['facts'] if f['relation'] == 'climate'}
places = world['kb']['places']


corpus = sorted({json.loads(l)['rationale'] for l in open(f'{world_dir}/knowledge.jsonl')}) \
    if retrieve else []
by_word = collections.defaultdict(list)


def index(statements):
    by_word.clear()
    for st in statements:
        for w in set(re.findall(r"[a-z]+", st.lower())):
            by_word[w].append(st)


def context(question):
    if not retrieve:
        return question
    found = []
    for w in re.findall(r"[a-z]+", question.lower()):
        hits = by_word.get(w, [])
        if len(hits) <= retrieve:
            found += [h for h in hits if h not in found]
    return ' '.join(found + [question])


def rationale(creature, place):
    return f'A {creature} lives in {place}. {place.capitalize()} is {climate[place]}.'


for d in scorers:
    cal = json.load(open(f'{d}/plausibility.json'))
    cal = cal.get('likelihood', cal)
    pooling = cal.get('pooling', 'min')
    if cal.get('knowledge'):
        retrieve = cal['knowledge']['max_statements_per_word']
        index(cal['knowledge']['statements'])
    else:
        retrieve = flag_retrieve
        index(corpus)
    tok = Tokenizer.from_file(f'{d}/tokenizer.json')
    model = T5ForConditionalGeneration.from_pretrained(d)
    model.eval()

    def pooled(question, texts):
        enc = torch.tensor([tok.encode(cal.get('prompt') or context(question)).ids])
        out = []
        with torch.no_grad():
            states = model.get_encoder()(input_ids=enc).last_hidden_state
            for t in texts:
                ids = tok.encode(t).ids[:-1]  # without </s>
                logits = model(encoder_outputs=(states,),
                               decoder_input_ids=torch.tensor([[0] + ids[:-1]])).logits[0]
                lp = logits.log_softmax(-1)[torch.arange(len(ids)), torch.tensor(ids)]
                out.append(lp.min().item() if pooling == 'min' else lp.mean().item())
        return out

    wins = collections.defaultdict(lambda: [0.0, 0, 0.0, 0])
    for split in ('train', 'dev', 'test'):
        for q in world[split]:
            if q['kind'] not in ('lives_cold', 'lives_hot'):
                continue
            x = q['creature']
            true = next(f['value'] for f in q['facts'] if f['relation'] == 'lives_in')
            others = [p for p in places if p != true and climate[p] == climate[true]]
            stereotype = next(p for p in places if climate[p] == climate[true])
            s = pooled(q['question'], [rationale(x, true)] + [rationale(x, p) for p in others])
            w = wins[(split, q['kind'])]
            for p, v in zip(others, s[1:]):
                win = 1.0 if s[0] > v else 0.5 if s[0] == v else 0.0
                w[0] += win
                w[1] += 1
                if p == stereotype:
                    w[2] += win
                    w[3] += 1
    reads = 'the prompt ' + repr(cal['prompt']) if cal.get('prompt') else 'the question'
    if retrieve and not cal.get('prompt') and not cal.get('knowledge'):
        reads += f' after the knowledge statements of its words in <= {retrieve} statements'
    if cal.get('knowledge'):
        reads += f' after its own knowledge statements of the words in <= {retrieve} of them'
    print(f"{d} (reads {reads}, pooling {pooling})")
    print('| split | form | pairs | true > false place | true > stereotype place |')
    print('|---|---|---:|---:|---:|')
    for (split, form), (a, n, b, m) in sorted(wins.items()):
        st = f'{b / m:.3f} ({m})' if m else '-'
        print(f'| {split} | {form} | {n} | {a / n:.3f} | {st} |')
    print()
