#!/usr/bin/env python3
"""world-pool-foods.py RUN: for the food questions of a world pipeline run's MaRio pool
(RUN/mario/pool.jsonl; `What color is the food a X eats?` = food_color, `Does a X eat something
C?` = eats_color), counts per round and source the items whose rationale names the creature's
food rightly ("true"), names another food ("false") or names none ("vague"), with the mean of
each reward's score (the reward order is RUN/mario/mario.json's). It shows whether the policy's
samples drift to wrong foods and how each reward ranks them."""
import collections
import json
import re
import statistics
import sys

if len(sys.argv) != 2:
    sys.exit(__doc__)
run = sys.argv[1]
world = json.load(open(f'{run}/data/world/world.json'))
eats = {f['subject']: f['value'] for split in ('train', 'dev', 'test') for q in world[split]
        for f in q.get('facts', []) if f['relation'] == 'eats'}
mario = json.load(open(f'{run}/mario/mario.json'))
rewards = [r['name'] if isinstance(r, dict) else r for r in mario.get('rewards', [])]

stats = collections.defaultdict(list)
for line in open(f'{run}/mario/pool.jsonl'):
    item = json.loads(line)
    q = item['question']
    m = re.match(r'What color is the food a (\w+) eats', q) or re.match(r'Does a (\w+) eat something', q)
    if not m:
        continue
    form = 'food_color' if q.startswith('What') else 'eats_color'
    said = re.search(r'eats (\w+)\.', item['text'])
    kind = 'vague' if not said else ('true' if eats.get(m.group(1)) == said.group(1).lower() else 'false')
    source = item['source'] if item['round'] == 0 else 'policy'
    stats[(form, item['round'], source, kind)].append(item['scores'])
print('| form | round | source | food named | items | ' + ' | '.join(f'mean {r}' for r in rewards) + ' |')
print('|---|---:|---|---|---:|' + '---:|' * len(rewards))
for (form, rnd, source, kind), scores in sorted(stats.items()):
    means = [statistics.mean(s[i] for s in scores) for i in range(len(rewards))]
    print(f'| {form} | {rnd} | {source} | {kind} | {len(scores)} | ' + ' | '.join(f'{x:.3f}' for x in means) + ' |')
