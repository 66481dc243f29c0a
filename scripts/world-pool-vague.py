#!/usr/bin/env python3
"""world-pool-vague.py RUN [QUESTION_START]: for the questions of a world pipeline run's MaRio
pool (RUN/mario/pool.jsonl) that start with QUESTION_START (default "Which lives somewhere
hot", the `which_hot` form), counts per round the items whose rationale names an entity of the
question ("facts") or none ("vague", the teacher's "It depends on the place."), with the mean of
each reward's score. It shows whether the pool drifts to vague rationales and which reward
ranks them above the fact-stating ones (the reward order is RUN/mario/mario.json's)."""
import collections
import json
import re
import statistics
import sys

if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
run = sys.argv[1]
start = sys.argv[2] if len(sys.argv) == 3 else 'Which lives somewhere hot'
world = json.load(open(f'{run}/data/world/world.json'))
names = {f[k].lower() for split in ('train', 'dev', 'test') for q in world[split]
         for f in q.get('facts', []) for k in ('subject', 'value')}
mario = json.load(open(f'{run}/mario/mario.json'))
rewards = [r['name'] if isinstance(r, dict) else r for r in mario.get('rewards', [])]


def words(text):
    return set(re.findall(r'\w+', text.lower()))


stats = collections.defaultdict(list)
for line in open(f'{run}/mario/pool.jsonl'):
    item = json.loads(line)
    if not item['question'].startswith(start):
        continue
    entities = words(item['question']) & names
    kind = 'facts' if words(item['text']) & entities else 'vague'
    stats[(item['round'], kind)].append(item['scores'])
print('| round | rationale | items | ' + ' | '.join(f'mean {r}' for r in rewards) + ' |')
print('|---:|---|---:|' + '---:|' * len(rewards))
for (rnd, kind), scores in sorted(stats.items()):
    means = [statistics.mean(s[i] for s in scores) for i in range(len(rewards))]
    print(f'| {rnd} | {kind} | {len(scores)} | ' + ' | '.join(f'{m:.3f}' for m in means) + ' |')
