#!/usr/bin/env python3
"""Per-form scores of a world evaluation: accuracy and the ground-truth measures of
`mario-train eval` outputs, grouped by the question's form (read from world.json).

usage: scripts/world-forms.py WORLD_DIR EXAMPLES.jsonl [EXAMPLES.jsonl ...]
  WORLD_DIR: the generated data folder (holds world.json)
  EXAMPLES.jsonl: `mario-train eval --out DIR` writes DIR/examples.jsonl; the pipeline's
    test split (`test/sft.jsonl`, `test/mario.jsonl`) and MaRio's dev files
    (`mario/dev/round-N.jsonl`), whose lines carry a `scores` object, read the same way
Prints a markdown table per file (with the learned rewards' means where the file has them),
and the share of its most common gold answer.
"""
import collections
import json
import sys


def forms_by_question(world_dir):
    world = json.load(open(f"{world_dir}/world.json"))
    out = {}
    for split in ("train", "dev", "test"):
        for q in world[split]:
            out[q["question"]] = q["kind"]
    return out


def measures(r):
    """(correct, {measure: value}) of one line of either file kind."""
    if "scores" in r:
        return r["scores"].get("accuracy"), r["scores"]
    return r["correct"], r["measures"]


def table(forms, path):
    rows = collections.defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        rows[forms.get(r["question"], "?")].append(measures(r))
    keys = ["truth_complete", "truth_entailed", "truth_fact_accuracy", "truth_no_repetition"]
    learned = ["consistency", "plausibility", "diversity"]
    keys += [k for k in learned if any(k in m for rs in rows.values() for _, m in rs)]
    print(f"\n{path}\n")
    print("| form | n | accuracy | " + " | ".join(k.removeprefix("truth_") for k in keys) + " |")
    print("|---|---:|---:|" + "---:|" * len(keys))
    for form in sorted(rows):
        rs = rows[form]
        acc = sum(float(c) for c, _ in rs) / len(rs)
        cells = []
        for k in keys:
            vals = [m.get(k) for _, m in rs if m.get(k) is not None]
            cells.append(f"{sum(vals) / len(vals):.3f}" if vals else "-")
        print(f"| {form} | {len(rs)} | {acc:.2f} | " + " | ".join(cells) + " |")
    golds = collections.Counter(json.loads(line).get("gold") for line in open(path))
    golds.pop(None, None)
    if golds:
        label, n = golds.most_common(1)[0]
        print(f"\nmajority gold answer: {label}, {n} of {sum(golds.values())} "
              f"({100 * n / sum(golds.values()):.1f} %)")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    forms = forms_by_question(sys.argv[1])
    for p in sys.argv[2:]:
        table(forms, p)
