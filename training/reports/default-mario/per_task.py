"""Per-task means of a per-question dev file written by `mario-train mario`/`pipeline`
(`<run>/mario/dev/<label>.jsonl`): each row's task is found by matching its question against
the tasks' dev files. Usage: python3 per_task.py $MARIO_DATA FILE.jsonl [FILE.jsonl ...]"""
import json
import sys
from collections import defaultdict

data, files = sys.argv[1], sys.argv[2:]
task_of = {}
for task in ["strategyqa", "quarel", "numersense"]:
    for row in json.load(open(f"{data}/{task}/dev.jsonl")).values():
        task_of[row["question"]] = task
for path in files:
    sums = defaultdict(lambda: defaultdict(float))
    counts = defaultdict(lambda: defaultdict(int))
    for line in open(path):
        row = json.loads(line)
        task = task_of[row["question"]]
        for name, value in row["scores"].items():
            if value is not None:
                sums[task][name] += value
                counts[task][name] += 1
    print(path)
    for task in sums:
        n = max(counts[task].values())
        means = ", ".join(
            f"{k} {sums[task][k] / counts[task][k]:.4f}" for k in sorted(sums[task])
        )
        print(f"  {task} ({n} questions): {means}")
