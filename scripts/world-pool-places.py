#!/usr/bin/env python3
"""world-pool-places.py RUN: for the place questions ("Does a X live somewhere cold/hot?") of a
world pipeline run's MaRio pool (RUN/mario/pool.jsonl), counts per round, source and form the
items whose first sentence names the creature's own place ("own"), another place ("wrong") or
something else ("other"), with their mean plausibility score (the pool's third score). It shows
whether the pool holds the stereotype place for the plausibility reward to bin and whether the
scorer ranks it below the creature's own place."""
import collections
import json
import re
import statistics
import sys

run = sys.argv[1]
world = json.load(open(f'{run}/data/world/world.json'))
lives = {}
for split in ('train', 'dev', 'test'):
    for q in world[split]:
        for f in q.get('facts', []):
            if f['relation'] == 'lives_in':
                lives[f['subject']] = f['value']
mario = json.load(open(f'{run}/mario/mario.json'))
rewards = [r['name'] if isinstance(r, dict) else r for r in mario.get('rewards', [])]
plaus = rewards.index('plausibility') if 'plausibility' in rewards else 2
stats = collections.defaultdict(list)
for line in open(f'{run}/mario/pool.jsonl'):
    item = json.loads(line)
    m = re.match(r'Does a (\w+) live somewhere (cold|hot)\?', item['question'])
    if not m:
        continue
    creature, form = m[1], m[2]
    first = re.match(r'A (\w+) lives in (\w+)\.', item['text'])
    if not first or first[1] != creature or creature not in lives:
        kind = 'other'
    else:
        kind = 'own' if first[2] == lives[creature] else 'wrong'
    stats[(item['round'], item['source'], form, kind)].append(item['scores'][plaus])
print('| round | source | form | first place | items | mean plausibility |')
print('|---:|---|---|---|---:|---:|')
for (rnd, source, form, kind), scores in sorted(stats.items()):
    print(f'| {rnd} | {source} | {form} | {kind} | {len(scores)} | {statistics.mean(scores):.3f} |')
