#!/usr/bin/env python3
"""world-named-places.py WORLD_DIR [OUTPUTS.jsonl ...]: which places a world's rationales name.

For the silver data (WORLD_DIR/train.jsonl): per place form ("Does a X live somewhere
cold/hot?"), the samples and the places their first sentence names, most named first; and how
many "Does a X eat something C?" samples state a fact ("A X eats F.") rather than a vague
rationale. For each outputs file (eval's examples.jsonl or a pipeline's test/*.jsonl): the place
questions' outputs per named place, and how many of those name a place that is not the
creature's own (world.json)."""
import collections
import json
import re
import sys

world_dir = sys.argv[1]
world = json.load(open(f'{world_dir}/world.json'))
lives = {f['subject']: f['value'] for f in world['kb']['facts'] if f['relation'] == 'lives_in'}
PLACE_Q = re.compile(r'Does a (\w+) live somewhere (cold|hot)\?')
NAMED = re.compile(r'A (\w+) lives in (\w+)\.')


def rows(path):
    return [json.loads(line) for line in open(path) if line.strip()]


silver = rows(f'{world_dir}/train.jsonl')
print(f'{world_dir}/train.jsonl (silver)\n')
print('| form | samples | first place named (samples) |\n|---|---:|---|')
for form in ('cold', 'hot'):
    named = collections.Counter()
    n = 0
    for r in silver:
        if (m := PLACE_Q.fullmatch(r['question'])) and m[2] == form:
            n += 1
            first = NAMED.match(r['rationale'])
            named[first[2] if first else '(none)'] += 1
    top = ', '.join(f'{p} {c}' for p, c in named.most_common(4))
    print(f'| live somewhere {form}? | {n} | {top} |')
eats = [r for r in silver if 'eat something' in r['question']]
stated = sum(bool(re.search(r'\beats \w+\.', r['rationale'])) for r in eats)
print(f'\n"eat something C?" samples: {len(eats)}, stating a fact: {stated}')

for path in sys.argv[2:]:
    named = collections.Counter()
    not_own = collections.Counter()
    n = 0
    for r in rows(path):
        m = PLACE_Q.fullmatch(r['question'])
        if not m:
            continue
        n += 1
        first = NAMED.match(r.get('output') or r.get('generated') or '')
        place = first[2] if first and first[1] == m[1] else '(none)'
        named[place] += 1
        if place != '(none)' and lives.get(m[1]) != place:
            not_own[place] += 1
    print(f'\n{path}: {n} place questions\n')
    print('| place named | outputs | not the creature\'s own place |\n|---|---:|---:|')
    for place, c in named.most_common():
        print(f'| {place} | {c} | {not_own[place]} |')
