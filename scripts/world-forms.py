#!/usr/bin/env python3
"""Per-form scores of a world evaluation: accuracy and the ground-truth measures of
`mario-train eval` outputs, grouped by the question's form (read from world.json).

usage: scripts/world-forms.py WORLD_DIR EXAMPLES.jsonl [EXAMPLES.jsonl ...]
       scripts/world-forms.py --mix WORLD_DIR [DEV.jsonl TEST.jsonl]
  WORLD_DIR: the generated data folder (holds world.json)
  EXAMPLES.jsonl: `mario-train eval --out DIR` writes DIR/examples.jsonl; the pipeline's
    test split (`test/sft.jsonl`, `test/mario.jsonl`) and MaRio's dev files
    (`mario/dev/round-N.jsonl`), whose lines carry a `scores` object, read the same way
Prints a markdown table per file (with the learned rewards' means where the file has them),
and the share of its most common gold answer.
--mix: the dev and test splits' questions per form (world.json); with one model's outputs on
  each (e.g. `mario/dev/sft.jsonl` and `test/sft.jsonl`), its accuracy per form on each, and
  its dev accuracy re-weighted by the test split's form counts (what dev would have measured
  with test's mix of forms).
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


def rows_by_form(forms, path):
    """{form: [(correct, {measure: value})]} of one outputs file."""
    rows = collections.defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        rows[forms.get(r["question"], "?")].append(measures(r))
    return rows


def table(forms, path):
    rows = rows_by_form(forms, path)
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


def accuracy_by_form(forms, path):
    """{form: (right, n)} of one outputs file."""
    rows = rows_by_form(forms, path)
    return collections.defaultdict(lambda: (0.0, 0), {
        form: (sum(float(c) for c, _ in rs), len(rs)) for form, rs in rows.items()})


def mix(world_dir, outputs):
    world = json.load(open(f"{world_dir}/world.json"))
    count = {s: collections.Counter(q["kind"] for q in world[s]) for s in ("dev", "test")}
    every = sorted(set(count["dev"]) | set(count["test"]))
    if not outputs:
        print("| form | dev | test |\n|---|---:|---:|")
        for f in every:
            print(f"| {f} | {count['dev'][f]} | {count['test'][f]} |")
        print(f"| all | {sum(count['dev'].values())} | {sum(count['test'].values())} |")
        return
    forms = forms_by_question(world_dir)
    dev, test = (accuracy_by_form(forms, p) for p in outputs)
    print("| form | dev | test | dev accuracy | test accuracy |\n|---|---:|---:|---:|---:|")
    for f in every:
        acc = [f"{a[f][0] / a[f][1]:.3f}" if a[f][1] else "-" for a in (dev, test)]
        print(f"| {f} | {count['dev'][f]} | {count['test'][f]} | {acc[0]} | {acc[1]} |")
    overall = [sum(c[0] for c in a.values()) / sum(c[1] for c in a.values()) for a in (dev, test)]
    n_test = sum(count["test"].values())
    reweighted = sum(dev[f][0] / dev[f][1] * count["test"][f] for f in every if dev[f][1]) / n_test
    print(f"\ndev accuracy {100 * overall[0]:.1f} %, test accuracy {100 * overall[1]:.1f} %, "
          f"dev accuracy with the test split's form counts {100 * reweighted:.1f} %")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--mix" and len(sys.argv) in (3, 5):
        mix(sys.argv[2], sys.argv[3:])
        sys.exit(0)
    if len(sys.argv) < 3 or sys.argv[1] == "--mix":
        sys.exit(__doc__)
    forms = forms_by_question(sys.argv[1])
    for p in sys.argv[2:]:
        table(forms, p)
