#!/usr/bin/env python3
"""Do rationales mention their question's entities? For per-question output files written by
`mario-train` (`mario/dev/*.jsonl`, `eval`'s `examples.jsonl`, `test/*.jsonl`): the share of
outputs whose rationale shares a content word (a word of 4+ letters that is not a stop word)
with the question, the share that share a capitalised question word (a name), and how many
distinct rationales there are.

    scripts/rationale-overlap.py FILE [FILE ...]

Standard library only; prints one markdown table row per file.
"""
import json
import re
import sys

STOP = set(
    """would could should about above after again against because been before being below
    between both does doing down during each from further have having here into itself more
    most other over same some such than that their theirs them then there these they this
    those through under until very what when where which while whom with your answer""".split()
)


def words(text):
    return re.findall(r"[A-Za-z][A-Za-z'-]+", text)


def content(text):
    return {w.lower() for w in words(text) if len(w) >= 4 and w.lower() not in STOP}


def names(text):
    # capitalised words other than the first of the question
    ws = words(text)
    return {w.lower() for w in ws[1:] if w[0].isupper()}


def rationale(output):
    return output.split("So the answer is")[0]


def main(paths):
    print("| file | outputs | share a content word | share a name | distinct rationales |")
    print("|---|---:|---:|---:|---:|")
    for path in paths:
        rows = [json.loads(line) for line in open(path) if line.strip()]
        n = len(rows)
        word = sum(bool(content(r["question"]) & content(rationale(r["output"]))) for r in rows)
        with_names = [r for r in rows if names(r["question"])]
        name = sum(bool(names(r["question"]) & content(rationale(r["output"]))) for r in with_names)
        distinct = len({rationale(r["output"]).strip() for r in rows})
        print(
            f"| {path} | {n} | {word} ({100 * word / max(n, 1):.1f} %) | "
            f"{name} of {len(with_names)} ({100 * name / max(len(with_names), 1):.1f} %) | {distinct} |"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
