#!/usr/bin/env python3
"""Training throughput of transformers (PyTorch) on synthetic batches: the peer of
training/examples/train_throughput.rs. One step = forward, backward, clip, AdamW update.
Prints one JSON line."""
import argparse
import json
import os
import statistics
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src", type=int, default=32)
    ap.add_argument("--tgt", type=int, default=48)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch
    from transformers import T5ForConditionalGeneration

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration.from_pretrained(a.model, dtype=torch.float32)
    model.train()
    vocab = model.config.vocab_size
    x = torch.randint(3, vocab, (a.batch, a.src))
    x[:, -1] = 1
    y = torch.randint(3, vocab, (a.batch, a.tgt))
    y[:, -1] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def step():
        out = model(input_ids=x, labels=y)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss)

    for _ in range(2):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(json.dumps({
        "engine": "torch", "model": os.path.basename(os.path.normpath(a.model)),
        "batch": a.batch, "src": a.src, "tgt": a.tgt, "threads": a.threads,
        "step_s_median": med, "tokens_per_s": a.batch * (a.src + a.tgt) / med,
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
