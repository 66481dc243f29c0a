#!/usr/bin/env python3
"""The training questions of a generated world per form and gold answer: how many there are,
how many the teacher never answers right (`[world] unsolved`, world.json's `unsolved`), and
how many are left with a silver rationale in train.jsonl.

usage: scripts/world-unsolved.py WORLD_DIR [WORLD_DIR ...]
  WORLD_DIR: the generated data folder (`mario-train world --out DIR`, or a pipeline's
    DIR/data/world)
Prints a markdown table per folder.
"""
import collections
import json
import sys


def table(world_dir):
    world = json.load(open(f"{world_dir}/world.json"))
    unsolved = set(world["unsolved"])
    silver = {json.loads(line)["question"] for line in open(f"{world_dir}/train.jsonl")}
    rows = collections.defaultdict(lambda: [0, 0, 0])
    for q in world["train"]:
        r = rows[(q["kind"], q["answer"])]
        r[0] += 1
        r[1] += q["question"] in unsolved
        r[2] += q["question"] in silver
    print(f"\n{world_dir}: {len(world['train'])} training questions, {len(unsolved)} unsolved\n")
    print("| form | answer | questions | unsolved | in train.jsonl |")
    print("|---|---|---:|---:|---:|")
    for (form, answer), (n, u, s) in sorted(rows.items()):
        print(f"| {form} | {answer} | {n} | {u} | {s} |")


for d in sys.argv[1:]:
    table(d)
