#!/usr/bin/env python3
"""Which names of a generated world a tokenizer splits into more than one piece, per entity
type (a split name is one the model must copy piece by piece and recall through several
embeddings).

usage: scripts/world-names.py TOKENIZER.json WORLD_DIR
  TOKENIZER.json: a tokenizer.json (e.g. a pipeline run's)
  WORLD_DIR: the generated data folder (holds world.json)
Needs the `tokenizers` Python package.
"""
import json
import sys

from tokenizers import Tokenizer


def main(tokenizer_path, world_dir):
    tok = Tokenizer.from_file(tokenizer_path)
    kb = json.load(open(f"{world_dir}/world.json"))["kb"]
    print("| entities | names | split into pieces | examples |")
    print("|---|---:|---:|---|")
    for kind in ["objects", "materials", "creatures", "places", "foods"]:
        names = kb[kind]
        split = [n for n in names if len(tok.encode(" " + n, add_special_tokens=False).tokens) > 1]
        print(f"| {kind} | {len(names)} | {len(split)} | {', '.join(split[:6])} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
