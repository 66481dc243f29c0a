#!/usr/bin/env python3
"""How a MaRio pool's reward scores split between and within questions, and where a world's
flawed samples land in the quantile bins, cut over the whole pool or within each question
(training/reports/world/README.md, "Consistency binned within each question").

usage: scripts/pool-bins.py RUN_DIR [ROUND] [STEP]
  RUN_DIR  a pipeline run on a generated world (data/world/world.json, mario/pool.jsonl)
  ROUND    the round whose pool is cut into bins (default 0: the items of round 0)
  STEP     for (3): the `[mario] score_steps` step of consistency (default 0.05)
Prints (1) for each reward, the share of its score variance over the whole pool (every round)
that lies within questions; (2) over the pool of rounds 0..ROUND, 5 equal-count bins (best
first) of consistency for `eats_color` samples that state a fact ("... eats ...") and those that
do not, and of plausibility for `lives_cold` samples naming the creature's own place and those
naming another, each cut over the whole pool and on scores minus their question's mean
(`[mario] bins_within_question`). Ties are ordered by pool position here, where the trainer
splits them by a seeded shuffle; consistency and plausibility scores rarely tie. (3) over the
same items, what each consistency bin holds (wrong answers, right answers whose rationale
states no fact, other right answers), cut within question as the trainer does with
`tied_scores = "best_bin"`, without and with the centred scores rounded to STEP; (4) the same
cut on the right answers only (`[mario] bins_on_right_answers`); (5) those right answers'
consistency bins against their plausibility bins.
"""
import collections
import json
import re
import statistics
import sys

if len(sys.argv) < 2:
    sys.exit(__doc__)
run = sys.argv[1]
last_round = int(sys.argv[2]) if len(sys.argv) > 2 else 0
step = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
REWARDS = ['consistency', 'accuracy', 'plausibility', 'diversity']  # the configs' order
world = json.load(open(f'{run}/data/world/world.json'))
train = {q['question']: q for q in world['train']}
pool = [json.loads(line) for line in open(f'{run}/mario/pool.jsonl')]

print('share of each reward\'s variance within questions (whole pool):')
for k, name in enumerate(REWARDS):
    by_q = collections.defaultdict(list)
    for r in pool:
        if r['scores'][k] is not None:
            by_q[r['question']].append(r['scores'][k])
    values = [v for vs in by_q.values() for v in vs]
    within = sum(statistics.pvariance(vs) * len(vs) for vs in by_q.values()) / len(values)
    print(f'  {name}: {within / statistics.pvariance(values):.2f}')


def bins(values, k=5):
    order = sorted(range(len(values)), key=lambda i: -values[i])
    out = [0] * len(values)
    for rank, i in enumerate(order):
        out[i] = rank * k // len(values)
    return out


def centred(values, questions):
    by_q = collections.defaultdict(list)
    for v, q in zip(values, questions):
        by_q[q].append(v)
    return [v - statistics.mean(by_q[q]) for v, q in zip(values, questions)]


items = [r for r in pool if r['round'] <= last_round]
questions = [r['question'] for r in items]


def own_place(r):
    place = next(f['value'] for f in train[r['question']]['facts'] if f['relation'] == 'lives_in')
    m = re.search(r'lives in (\w+)', r['text'])
    return bool(m) and m.group(1).lower() == place


cases = [
    ('consistency', 'eats_color', 'states a fact', lambda r: ' eats ' in r['text']),
    ('plausibility', 'lives_cold', 'its own place', own_place),
]
print(f'\nitems per bin (best first), pool of rounds 0..{last_round} ({len(items)} items):')
for name, form, good, is_good in cases:
    k = REWARDS.index(name)
    values = [r['scores'][k] for r in items]
    for how, b in (('whole pool', bins(values)), ('within question', bins(centred(values, questions)))):
        counts = {True: [0] * 5, False: [0] * 5}
        for r, bin_ in zip(items, b):
            q = train.get(r['question'])
            if q and q['kind'] == form:
                counts[is_good(r)][bin_] += 1
        print(f'  {name}, {form}, {how}: {good} {counts[True]}, not {counts[False]}')


def bins_best_bin(values, k=5):
    """The trainer's `tied_scores = "best_bin"`: a tie group takes the best bin it reaches."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    out, group = [0] * len(values), 0
    for rank, i in enumerate(order):
        if rank == 0 or values[order[rank - 1]] != values[i]:
            group = min(rank * k // len(values), k - 1)
        out[i] = group
    return out


FACT = [re.compile(p) for p in (r'^A [a-z]+ (is made of|lives in|eats) [a-z]+$',
                                r'^[A-Z][a-z]+ (floats on water|sinks in water)$',
                                r'^[A-Z][a-z]+ is [a-z]+$')]


def kind(r):
    if r['scores'][REWARDS.index('accuracy')] < 0.5:
        return 'wrong'
    rationale = r['text'].split('So the answer is')[0]
    sents = [x.strip() for x in rationale.split('.') if x.strip()]
    return 'right, states a fact' if any(p.match(x) for x in sents for p in FACT) else 'right, no fact'


k = REWARDS.index('consistency')
centred_scores = centred([r['scores'][k] for r in items], questions)
kinds = [kind(r) for r in items]
print(f'\nconsistency bins within question, best_bin ties, pool of rounds 0..{last_round}:')
for how, values in (('scores as they are', centred_scores),
                    (f'rounded to {step}', [round(v / step) * step for v in centred_scores])):
    b = bins_best_bin(values)
    print(f'  {how}:')
    for bin_ in range(5):
        members = [kd for kd, x in zip(kinds, b) if x == bin_]
        if members:
            shares = ', '.join(f'{kd} {members.count(kd) / len(members):.0%}'
                               for kd in ('wrong', 'right, no fact', 'right, states a fact'))
            print(f'    bin {bin_}: {len(members)} items: {shares}')

# `[mario] bins_on_right_answers = ["consistency"]`: the cut (and the question means) over the
# right answers only; each wrong answer takes a bin drawn in the right answers' proportions, so
# every bin holds the same share of wrong answers (its expected count is printed)
right = [i for i, kd in enumerate(kinds) if kd != 'wrong']
n_wrong = len(items) - len(right)
right_centred = centred([items[i]['scores'][k] for i in right], [questions[i] for i in right])
print(f'\nconsistency bins cut on the right answers only ({len(right)} items; '
      f'{n_wrong} wrong answers spread in proportion):')
for how, values in (('scores as they are', right_centred),
                    (f'rounded to {step}', [round(v / step) * step for v in right_centred])):
    b = cons_bins = bins_best_bin(values)  # the rounded cut's bins stay for (5)
    print(f'  {how}:')
    for bin_ in range(5):
        members = [kinds[i] for i, x in zip(right, b) if x == bin_]
        if members:
            no_fact = members.count('right, no fact') / len(members)
            print(f'    bin {bin_}: {len(members)} right answers (no fact {no_fact:.0%}) '
                  f'+ about {n_wrong * len(members) / len(right):.0f} wrong')

# (5) the same right answers' consistency bins (cut on the right answers, rounded to STEP)
# against their plausibility bins (the whole pool, within question, best_bin ties): how often
# the worst consistency token comes with a good plausibility token
p = REWARDS.index('plausibility')
plaus_bins = bins_best_bin(centred([r['scores'][p] for r in items], questions))
cross = collections.Counter((cons_bins[j], plaus_bins[i]) for j, i in enumerate(right))
print(f'\nright answers, consistency bin (rows; cut on right answers, rounded to {step}) by '
      'plausibility bin (columns, best first):')
for c in range(5):
    row = [cross[(c, b)] for b in range(5)]
    if sum(row):
        print(f'  consistency bin {c}: {row}')
