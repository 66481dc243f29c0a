#!/usr/bin/env python3
"""Per-form scores of a world evaluation: accuracy and the ground-truth measures of
`mario-train eval` outputs, grouped by the question's form (read from world.json).

usage: scripts/world-forms.py WORLD_DIR EXAMPLES.jsonl [EXAMPLES.jsonl ...]
  WORLD_DIR: the generated data folder (holds world.json)
  EXAMPLES.jsonl: `mario-train eval --out DIR` writes DIR/examples.jsonl
Prints a markdown table per file.
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


def table(forms, path):
    rows = collections.defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        rows[forms.get(r["question"], "?")].append(r)
    keys = ["truth_complete", "truth_entailed", "truth_fact_accuracy", "truth_no_repetition"]
    print(f"\n{path}\n")
    print("| form | n | accuracy | " + " | ".join(k.removeprefix("truth_") for k in keys) + " |")
    print("|---|---:|---:|" + "---:|" * len(keys))
    for form in sorted(rows):
        rs = rows[form]
        acc = sum(r["correct"] for r in rs) / len(rs)
        cells = []
        for k in keys:
            vals = [r["measures"].get(k) for r in rs if r["measures"].get(k) is not None]
            cells.append(f"{sum(vals) / len(vals):.2f}" if vals else "-")
        print(f"| {form} | {len(rs)} | {acc:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    forms = forms_by_question(sys.argv[1])
    for p in sys.argv[2:]:
        table(forms, p)
