#!/usr/bin/env python3
"""Reference numbers for the VERA-format plausibility head (tests/rewards.rs), computed with
transformers' T5EncoderModel on the existing fixture tests/fixtures/t5-v1_1-gated.

VERA (liujch1998/vera), as MaRio's reward.py uses it: h = last_hidden_state at the last
non-pad position (attention_mask.sum(1) - 1); logit = h . E[w_row] + E[b_row, 0];
score = sigmoid(logit / E[t_row, 0]), with E = shared.weight. The fixture's vocabulary has 512
rows, so rows 511 / 510 / 509 play the roles of VERA's 32099 / 32098 / 32097.

    target/peer-venv/bin/python scripts/make_vera_reference.py
"""
import json
import os

import torch
from tokenizers import Tokenizer
from transformers import T5EncoderModel

DIR = os.path.join("tests", "fixtures", "t5-v1_1-gated")
ROWS = {"weight_row": 511, "bias_row": 510, "temperature_row": 509}
TEXTS = [
    "Pears are less dense than water, so they float.",
    "Venus is hot.",
    "A Corvette has two seats and Lil Wayne has four children, so they cannot all ride in it.",
]


def main():
    tok = Tokenizer.from_file(os.path.join(DIR, "tokenizer.json"))
    model = T5EncoderModel.from_pretrained(DIR, dtype=torch.float32).eval()
    E = model.shared.weight
    rows = [tok.encode(t).ids for t in TEXTS]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = h[torch.arange(len(rows)), mask.sum(1) - 1]
        logit = last @ E[ROWS["weight_row"]] + E[ROWS["bias_row"], 0]
        calibrated = logit / E[ROWS["temperature_row"], 0]
        score = torch.sigmoid(calibrated)
    out = {"description": __doc__.strip().splitlines()[0], **ROWS, "texts": TEXTS,
           "logits": [float(x) for x in calibrated], "scores": [float(x) for x in score]}
    with open(os.path.join(DIR, "vera_reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(out["scores"])


if __name__ == "__main__":
    main()
