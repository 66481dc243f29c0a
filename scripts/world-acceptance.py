#!/usr/bin/env python3
"""world-acceptance.py DIR [DIR ...]: each line of the proving-ground issue's acceptance, read
from a world pipeline's report.md (DIR: a run folder or a committed report folder), with
whether it holds. The lines: SFT test accuracy >= 75 % on a test split whose majority answer is
<= 55 %; the answer models' choice accuracy reported and the plausibility scorer's held-out AUC
against false-fact negatives >= 0.9; MaRio - SFT on the test split: consistency, plausibility,
diversity and truth_fact_accuracy with the interval above 0, accuracy not lower by more than 1
point; the sweep: best bin > worst bin with the interval above 0 for every reward, on the
learned reward and its ground truth. Exit status 1 when a line fails or cannot be read.

With --summary first, one markdown row per DIR instead (the world README's status table): SFT
test accuracy, MaRio - SFT accuracy and true facts with their paired 95 % intervals, and
whether every line holds (else the lines that fail)."""
import re
import sys


def test_rows(text):
    """{metric: (sft, mario, change, where, interval)} of the report's test-split table."""
    part = text.split('## Test split', 1)[1] if '## Test split' in text else ''
    rows = {}
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 6 and re.fullmatch(r'[+-]?[\d.]+', cells[3]):
            interval = re.match(r'\[[^\]]*\]', cells[4])
            rows[cells[0]] = (float(cells[1]), float(cells[2]), float(cells[3]), cells[5],
                              interval[0] if interval else cells[4])
        if line.startswith('!['):
            break
    return rows, part


def sweep_rows(text):
    """[(label, where)] of the sweep's best - worst table."""
    part = text.split('best - worst [95 %]', 1)[1] if 'best - worst [95 %]' in text else ''
    rows = []
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 6 and cells[0] and not cells[0].startswith('-'):
            rows.append((cells[0], cells[5]))
        elif rows and not line.startswith('|'):
            break
    return rows


def check(folder):
    """([(line, value, holds)], the test-split rows) of one report."""
    text = open(f'{folder}/report.md').read()
    lines = []
    tests, part = test_rows(text)
    acc = tests.get('accuracy')
    lines.append(('SFT test accuracy >= 75 %', f'{acc[0]:.1%}' if acc else 'missing',
                  bool(acc) and acc[0] >= 0.75))
    m = re.search(r'is ([\d.]+) % of them', part)
    lines.append(('majority answer <= 55 %', f'{m[1]} %' if m else 'missing',
                  bool(m) and float(m[1]) <= 55.0))
    choice = re.findall(r'\| (consistency-i\w*2o) \| dev choice accuracy[^|]*\| ([\d.]+) \|', text)
    lines.append(('answer models: choice accuracy reported',
                  ', '.join(f'{n} {v}' for n, v in choice) or 'missing', len(choice) >= 1))
    auc = re.search(r'held-out AUC against false fact negatives \| ([\d.]+) \|', text)
    lines.append(('scorer AUC against false facts >= 0.9', auc[1] if auc else 'missing',
                  bool(auc) and float(auc[1]) >= 0.9))
    for metric in ('consistency', 'plausibility', 'diversity', 'truth_fact_accuracy'):
        row = tests.get(metric)
        lines.append((f'MaRio - SFT {metric} above 0',
                      f'{row[2]:+.4f} ({row[3]})' if row else 'missing',
                      bool(row) and row[3] == 'above 0'))
    lines.append(('MaRio - SFT accuracy >= -1 point',
                  f'{acc[2] * 100:+.1f} points' if acc else 'missing',
                  bool(acc) and acc[2] >= -0.01 - 1e-9))
    sweep = sweep_rows(text)
    if len(sweep) < 7:
        lines.append(('sweep: every reward and its ground truth', f'{len(sweep)} lines', False))
    for label, where in sweep:
        lines.append((f'sweep best > worst: {label}', where, where == 'above 0'))
    return lines, tests


def summary_row(folder, lines, tests):
    """One status-table row: folder, SFT accuracy, accuracy and true-facts changes, verdict."""
    acc, facts = tests.get('accuracy'), tests.get('truth_fact_accuracy')
    failing = [name for name, _, ok in lines if not ok]
    verdict = '**yes**' if not failing else 'no: ' + '; '.join(failing)
    cells = [folder, f'{acc[0] * 100:.2f} %' if acc else 'missing',
             f'{acc[2] * 100:+.1f} {scale(acc[4], 100, 1)}' if acc else 'missing',
             f'{facts[2]:+.3f} {scale(facts[4], 1, 3)}' if facts else 'missing', verdict]
    return '| ' + ' | '.join(cells) + ' |'


def scale(interval, factor, digits):
    """An interval's bounds times factor with that many decimals: [-0.0601, +0.0601] with 100
    and 1 -> [-6.0, +6.0]."""
    return re.sub(r'[+-]?[\d.]+', lambda m: f'{float(m[0]) * factor:+.{digits}f}', interval)


args = sys.argv[1:]
summary = bool(args) and args[0] == '--summary'
if summary:
    args = args[1:]
    print('| report | SFT test accuracy | MaRio - SFT accuracy (points) | true facts |'
          ' every line of the acceptance |\n|---|---:|---:|---|---|')
failed = False
for folder in args:
    try:
        lines, tests = check(folder)
    except (OSError, IndexError, ValueError) as e:
        print(f'{folder}: cannot read its report: {e}')
        failed = True
        continue
    holds = all(ok for _, _, ok in lines)
    failed |= not holds
    if summary:
        print(summary_row(folder, lines, tests))
        continue
    print(f'\n{folder}: {"every line holds" if holds else "NOT every line holds"}\n')
    print('| line | value | holds |\n|---|---|---|')
    for name, value, ok in lines:
        print(f'| {name} | {value} | {"yes" if ok else "**no**"} |')
sys.exit(1 if failed else 0)
