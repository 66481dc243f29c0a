#!/usr/bin/env python3
"""Share of MaRio's own samples that carry a stereotype habit, round by round.

usage: scripts/world-habit-share.py RUN_DIR FORM
  RUN_DIR: a pipeline output folder (data/world/world.json, mario/pool.jsonl)
  FORM: a question form with a `stereotype` habit, e.g. lives_cold
A sample carries the stereotype when its first sentence names one of the entities the
stereotype names (the first entity of the hop's domain with each property value).
Prints, per round, the model's samples of that form (round 0: the SFT model's, `reference`;
then the policy's; the teacher's silver rows left out), how many name a stereotype, and the
mean plausibility reward of those that do and of those that do not.
"""
import json
import sys


def kind_of(q):
    k = q["kind"]
    return next(iter(k)) if isinstance(k, dict) else k


def stereotypes(world, form):
    """The names a stereotype of `form` states, by the rule of `Flaw::Stereotype`: the first
    entity of the hop's domain (in world.json's order) with each property value."""
    kb = world["kb"]
    facts = {(f["subject"], f["relation"]): f["value"] for f in kb["facts"]}
    hop = {
        "lives_cold": ("places", "climate"), "lives_hot": ("places", "climate"),
        "which_hot": ("places", "climate"), "floats": ("materials", "floats"),
        "sinks": ("materials", "floats"), "object_color": ("materials", "color"),
        "food_color": ("foods", "color"), "eats_color": ("foods", "color"),
    }[form]
    first = {}
    for e in kb[hop[0]]:
        first.setdefault(facts[(e, hop[1])], e)
    return set(first.values())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run, form = sys.argv[1], sys.argv[2]
    world = json.load(open(f"{run}/data/world/world.json"))
    forms = {q["question"]: kind_of(q) for q in world["train"]}
    names = stereotypes(world, form)
    print(f"{run} {form}: stereotypes {sorted(names)}")
    rewards = [r["name"] for r in json.load(open(f"{run}/mario/mario.json"))["rewards"]]
    plaus = rewards.index("plausibility")
    print("| round | samples | naming a stereotype | plausibility: stereotype | other |")
    print("|---:|---:|---:|---:|---:|")
    rounds = {}
    for line in open(f"{run}/mario/pool.jsonl"):
        r = json.loads(line)
        if r["source"] == "silver" or forms.get(r["question"]) != form:
            continue
        first = r["text"].split(".")[0].split()
        hit = bool(first) and first[-1] in names
        rounds.setdefault(r["round"], ([], []))[0 if hit else 1].append(r["scores"][plaus])
    mean = lambda xs: f"{sum(xs) / len(xs):.3f}" if xs else "-"
    for k in sorted(rounds):
        hit, other = rounds[k]
        n = len(hit) + len(other)
        print(f"| {k} | {n} | {len(hit)} ({100 * len(hit) / n:.0f} %) | {mean(hit)} | {mean(other)} |")


if __name__ == "__main__":
    main()
