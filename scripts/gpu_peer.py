#!/usr/bin/env python3
"""The transformers side of scripts/gpu-check.sh (runs on the GPU machine).

  gpu_peer.py make --out DIR --archs t5-small,t5-base,t5-large [--rows 128 --src-len 32]
      Writes random-init T5 v1.0 folders (original vocabulary size 32128, torch seed 0,
      transformers' initialisation, f32 safetensors) with a word-level tokenizer.json that
      covers the vocabulary, and DIR/inputs.jsonl: --rows rows of --src-len random ids
      ({"ids": [...]}, the last one </s>=1), the same for every model.
  gpu_peer.py time --models DIR1,DIR2 --inputs FILE --dtypes bf16,fp32 --batch-sizes 1,8,32,128
      Times transformers `generate` on those folders and inputs: greedy, exactly --new-tokens
      new tokens (min_new_tokens = max_new_tokens), --warmup untimed runs, median of --repeats,
      each ending with torch.cuda.synchronize(). Prints one JSON line per configuration, in
      the format of `mario-train bench-generate`.

Nothing here is downloaded: the weights are random, which costs the same per token.
"""
import argparse
import json
import os
import statistics
import sys
import time

ARCHS = {
    "tiny": dict(d_model=256, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=4, d_kv=64),
    "t5-small": dict(d_model=512, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8, d_kv=64),
    "t5-base": dict(d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64),
    "t5-large": dict(d_model=1024, d_ff=4096, num_layers=24, num_decoder_layers=24, num_heads=16, d_kv=64),
}
VOCAB = 32128


def word_level_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for i in range(3, VOCAB):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    tok.save(path)


def make(args):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration
    os.makedirs(args.out, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    with open(os.path.join(args.out, "inputs.jsonl"), "w") as f:
        for _ in range(args.rows):
            ids = torch.randint(3, 32000, (args.src_len - 1,), generator=g).tolist() + [1]
            f.write(json.dumps({"ids": ids}) + "\n")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for arch in args.archs.split(","):
        out = os.path.join(args.out, arch)
        cfg = T5Config(vocab_size=VOCAB, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                       feed_forward_proj="relu", tie_word_embeddings=True, **ARCHS[arch])
        torch.manual_seed(0)
        with torch.device(dev):
            model = T5ForConditionalGeneration(cfg)
        model.save_pretrained(out, safe_serialization=True)
        word_level_tokenizer(os.path.join(out, "tokenizer.json"))
        n = sum(p.numel() for p in model.parameters())
        print(json.dumps({"made": arch, "params_m": round(n / 1e6, 1), "dir": out}), flush=True)
        del model


def time_models(args):
    import torch
    from transformers import T5ForConditionalGeneration
    rows = [json.loads(l)["ids"] for l in open(args.inputs) if l.strip()]
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    for d in args.models.split(","):
        name = os.path.basename(os.path.normpath(d))
        for dt in args.dtypes.split(","):
            dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dt]
            model = T5ForConditionalGeneration.from_pretrained(d).to(dev, dtype=dtype).eval()
            for bs in [int(b) for b in args.batch_sizes.split(",")]:
                batch = rows[:bs]
                L = max(len(r) for r in batch)
                ids = torch.tensor([r + [0] * (L - len(r)) for r in batch], device=dev)
                mask = torch.tensor([[1] * len(r) + [0] * (L - len(r)) for r in batch], device=dev)

                def run():
                    with torch.inference_mode():
                        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                             min_new_tokens=args.new_tokens, do_sample=False, num_beams=1)
                    if cuda:
                        torch.cuda.synchronize()
                    return out

                for _ in range(args.warmup):
                    run()
                ts = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    out = run()
                    ts.append(time.perf_counter() - t0)
                t = statistics.median(ts)
                print(json.dumps(dict(
                    model=name, dtype=dt, batch=bs, src_len_max=L, new_tokens=args.new_tokens,
                    generated_lengths_ok=out.shape[1] - 1 == args.new_tokens, times_s=ts, s=t,
                    tok_s=bs * args.new_tokens / t, ms_per_step=1000 * t / args.new_tokens)), flush=True)
            del model
            if cuda:
                torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--archs", default="t5-small,t5-base,t5-large")
    m.add_argument("--rows", type=int, default=128)
    m.add_argument("--src-len", type=int, default=32)
    t = sub.add_parser("time")
    t.add_argument("--models", required=True)
    t.add_argument("--inputs", required=True)
    t.add_argument("--dtypes", default="bf16,fp32")
    t.add_argument("--batch-sizes", default="1,8,32,128")
    t.add_argument("--new-tokens", type=int, default=64)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--device", default="cuda")
    args = ap.parse_args()
    return make(args) if args.cmd == "make" else time_models(args)


if __name__ == "__main__":
    sys.exit(main())
