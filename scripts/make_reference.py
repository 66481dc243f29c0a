#!/usr/bin/env python3
"""Write the T5 reference fixtures under tests/fixtures/ (run once; outputs are committed).

Two tiny random checkpoints in the Hugging Face format, and what `transformers` computes with
them in float32, so that mario's Rust T5 can be checked against it:

  t5-v1_0-tied   T5 v1.0: ReLU feed-forward, tied embeddings (decoder output scaled by
                 d_model**-0.5 before the shared head), 32 buckets / max distance 128,
                 2 encoder + 2 decoder blocks.
  t5-v1_1-gated  T5 v1.1 / Flan-T5: gated-GELU feed-forward, untied lm_head, no output
                 scaling, 16 buckets / max distance 24 (so the 32-position decoder pass reaches
                 the clamped bucket), 3 encoder + 2 decoder blocks (num_decoder_layers
                 differs from num_layers).

A standard random init makes a T5 copy its input token (the embedding dominates the residual
stream), so greedy decoding would be all one token and prove little. The embedding is therefore
scaled down, the block weights and relative-position biases up, and the layer-norm weights
randomised; the script checks that the greedy ids vary and that the model is well conditioned
(transformers' float32 logits within 2e-5 of its float64 logits).

Each folder gets config.json, model.safetensors, tokenizer.json and reference.json:
  inputs[i].input_ids                   3 inputs of different lengths (each ends with </s>)
  inputs[i].encoder_hidden              float32 last_hidden_state (S, d_model), base64
  inputs[i].decoder_input_ids           [decoder_start] + 31 target ids (teacher forcing)
  inputs[i].logits                      float32 logits for all 32 positions (32, vocab), base64
  inputs[i].greedy_ids                  32 greedy steps (EOS suppressed: min_new_tokens=32)
  inputs[i].greedy_ids_eos              plain greedy, at most 32 tokens (stops at </s>)
  batched_greedy_ids                    the 3 inputs as one right-padded batch (must equal)
Arrays of floats are stored as base64 of little-endian float32 ("f32le-base64") with their
shape, which keeps the fixtures exact and small (under 3 MB in all).

The tokenizer is a small Unigram (vocab 512, T5 special tokens <pad>=0 </s>=1 <unk>=2) trained
on the StrategyQA train file of the MaRio data (MARIO_DATA, default ../shared/data/mario).

Usage (from the project root; transformers 4.x, because transformers 5 always ties the T5 head
and so cannot write a Flan-T5-style untied checkpoint):
    python3 -m venv target/peer-venv
    target/peer-venv/bin/pip install torch "transformers>=4.51,<5" tokenizers safetensors
    target/peer-venv/bin/python scripts/make_reference.py
"""
import argparse
import base64
import json
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_RS_NUM_THREADS", "1")

INPUTS = [
    "Is a pear heavier than water?",
    "question: Would someone on Venus be unlikely to experience hypothermia? answer:",
    "Could Lil Wayne's children ride in a Chevrolet Corvette ZR1 together? "
    "The car has two seats and he has four children.",
]
TARGETS = [
    "Pears are less dense than water, so they float on top of it instead of sinking to the "
    "bottom of a glass. So the answer is no.",
    "Venus is the hottest planet in the solar system, with surface temperatures far above the "
    "boiling point of water. So the answer is yes.",
    "A Corvette has only two seats, and Lil Wayne has four children, so they cannot all ride "
    "in it together. So the answer is no.",
]
DECODER_LEN = 32
# Weight scales (per model, found by a small search): large enough that greedy decoding is not
# degenerate, small enough that the model is well conditioned (float32 rounding must stay far
# below the 1e-4 test tolerance; the script checks transformers' float32 result against its
# float64 result). A smaller embedding keeps the input token from dominating the residual
# stream, which makes a random T5 copy its input.
SCALES = {
    "t5-v1_0-tied": dict(qk=2.0, blocks=3.5, embedding=0.5, position_bias=8.0, head=1.0),
    "t5-v1_1-gated": dict(qk=1.0, blocks=1.5, embedding=1.0, position_bias=8.0, head=0.25),
}
GREEDY_STEPS = 32

MODELS = {
    "t5-v1_0-tied": dict(
        d_model=64, d_kv=16, num_heads=4, d_ff=96, num_layers=2, num_decoder_layers=2,
        feed_forward_proj="relu", tie_word_embeddings=True,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
    ),
    "t5-v1_1-gated": dict(
        d_model=64, d_kv=16, num_heads=4, d_ff=64, num_layers=3, num_decoder_layers=2,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=16, relative_attention_max_distance=24,
    ),
}


def b64(t):
    import numpy as np
    a = t.detach().to("cpu").float().numpy().astype("<f4")
    return {"shape": list(a.shape), "f32le-base64": base64.b64encode(a.tobytes()).decode()}


def read_records(path):
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    return [obj[k] for k in sorted(obj, key=int)]


def train_tokenizer(texts, vocab_size):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
        max_piece_length=12, show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    assert [tok.token_to_id(t) for t in ("<pad>", "</s>", "<unk>")] == [0, 1, 2]
    return tok


def make_model(name, arch, vocab_size, out_dir, tok):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(1234 + len(name))
    cfg = T5Config(
        vocab_size=vocab_size, dropout_rate=0.1, layer_norm_epsilon=1e-6, initializer_factor=1.0,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **arch,
    )
    model = T5ForConditionalGeneration(cfg).eval()
    sc = SCALES[name]
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layer_norm" in pname:
                p.uniform_(0.5, 1.5)
            elif "relative_attention_bias" in pname:
                p.mul_(sc["position_bias"])
            elif pname.endswith(("q.weight", "k.weight")):
                p.mul_(sc["qk"])
            elif pname.endswith(("o.weight", "wo.weight", "wi.weight", "wi_0.weight", "wi_1.weight", "v.weight")):
                p.mul_(sc["blocks"])
            elif pname == "lm_head.weight":
                p.mul_(sc["head"])
            elif pname == "shared.weight":
                p.mul_(sc["embedding"])
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(out_dir, extra)
        if os.path.exists(path):
            os.remove(path)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    return model


def reference(model, tok):
    import copy

    import torch

    cfg = model.config
    model64 = copy.deepcopy(model).double()
    ref = {"inputs": []}
    worst = 0.0
    with torch.inference_mode():
        for text, target in zip(INPUTS, TARGETS):
            ids = tok.encode(text).ids
            x = torch.tensor([ids])
            enc = model.get_encoder()(input_ids=x).last_hidden_state
            tgt = tok.encode(target).ids
            assert len(tgt) >= DECODER_LEN, f"target too short ({len(tgt)} tokens): {target}"
            dec = [cfg.decoder_start_token_id] + tgt[: DECODER_LEN - 1]
            logits = model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([dec])).logits[0]
            # Conditioning check: transformers' float32 result against its own float64 result.
            enc64 = model64.get_encoder()(input_ids=x).last_hidden_state
            logits64 = model64(encoder_outputs=(enc64,), decoder_input_ids=torch.tensor([dec])).logits[0]
            worst = max(worst, float((enc.double() - enc64).abs().max()),
                        float((logits.double() - logits64).abs().max()))
            g = model.generate(input_ids=x, do_sample=False, num_beams=1,
                               max_new_tokens=GREEDY_STEPS, min_new_tokens=GREEDY_STEPS)[0, 1:].tolist()
            ge = model.generate(input_ids=x, do_sample=False, num_beams=1, max_new_tokens=GREEDY_STEPS)[0, 1:].tolist()
            if ge and ge[-1] == 0:  # generate pads finished rows; strip trailing pads after </s>
                while ge and ge[-1] == 0:
                    ge.pop()
            assert len(set(g)) >= 6, f"greedy output is degenerate: {g}"
            ref["inputs"].append({
                "text": text,
                "input_ids": ids,
                "encoder_hidden": b64(enc[0]),
                "target_text": target,
                "decoder_input_ids": dec,
                "logits": b64(logits),
                "greedy_ids": g,
                "greedy_ids_eos": ge,
            })
        rows = [tok.encode(t).ids for t in INPUTS]
        width = max(len(r) for r in rows)
        ids_b = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask_b = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        gb = model.generate(input_ids=ids_b, attention_mask=mask_b, do_sample=False, num_beams=1,
                            max_new_tokens=GREEDY_STEPS, min_new_tokens=GREEDY_STEPS)
        ref["batched_greedy_ids"] = [row[1:].tolist() for row in gb]
    assert worst < 2e-5, f"ill-conditioned fixture: float32 deviates from float64 by {worst}"
    ref["f32_vs_f64_max_abs"] = worst
    ref["batched_matches_single"] = ref["batched_greedy_ids"] == [c["greedy_ids"] for c in ref["inputs"]]
    return ref


def main():
    import tokenizers
    import torch
    import transformers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("MARIO_DATA", os.path.join("..", "shared", "data", "mario")))
    ap.add_argument("--out", default=os.path.join("tests", "fixtures"))
    ap.add_argument("--vocab-size", type=int, default=512)
    args = ap.parse_args()
    if transformers.__version__.startswith("5."):
        sys.exit("error: use transformers 4.x (transformers 5 cannot write an untied T5 head)")
    torch.set_num_threads(2)

    path = os.path.join(args.data, "strategyqa", "train.jsonl")
    texts = sorted({" ".join(r[k].split()) for r in read_records(path) for k in ("question", "rationale")})
    tok = train_tokenizer(texts, args.vocab_size)
    total = 0
    for name, arch in MODELS.items():
        out_dir = os.path.join(args.out, name)
        model = make_model(name, arch, tok.get_vocab_size(), out_dir, tok)
        ref = reference(model, tok)
        ref["description"] = (
            f"transformers {transformers.__version__}, torch {torch.__version__}, tokenizers "
            f"{tokenizers.__version__}, float32, written by scripts/make_reference.py; see its docstring"
        )
        with open(os.path.join(out_dir, "reference.json"), "w") as f:
            json.dump(ref, f, indent=1)
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
        total += size
        print(f"{name}: {sum(p.numel() for p in model.parameters())} params, {size / 1e6:.2f} MB, "
              f"f32 vs f64 {ref['f32_vs_f64_max_abs']:.2e}, "
              f"batched == single: {ref['batched_matches_single']}, greedy[0]: {ref['inputs'][0]['greedy_ids'][:12]}")
    print(f"total {total / 1e6:.2f} MB")
    if total > 3e6:
        sys.exit("error: fixtures exceed 3 MB")


if __name__ == "__main__":
    main()
