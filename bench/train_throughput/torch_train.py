#!/usr/bin/env python3
"""Training throughput of transformers (PyTorch) on synthetic batches: the peer of
`mario-train bench-train` (training/src/bench/train.rs), same folder, batch and lengths.

- sft: forward with labels, backward, clip_grad_norm_(1.0), AdamW (weight decay 0.01).
- mario: the QUARK update of the official code's stack: the policy reads `controls` control
  tokens before the target ([start, controls, target[:-1]] as decoder input), a frozen copy
  (the reference) reads [start, target[:-1]] under no_grad; loss = NLL + 0.1 KL(policy ||
  reference) over the target positions, both in f32 (the defaults of `mario-train mario`);
  backward, clip, AdamW.

Batches: ids uniform in [3, vocab), the last target token EOS (1); tokens per update are
batch * (src + tgt). bf16 runs the forward passes under torch.autocast (f32 weights and
optimizer, as mixed-precision training does). Times: `warmup` untimed updates, then the
median of `repeats`, each ended by a device synchronisation. One JSON line per row.
"""
import argparse
import copy
import json
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="model folders, comma-separated")
    ap.add_argument("--steps", default="sft,mario")
    ap.add_argument("--batch-sizes", default="4,32")
    ap.add_argument("--src", type=int, default=32)
    ap.add_argument("--tgt", type=int, default=48)
    ap.add_argument("--controls", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--dtypes", default="fp32", help="fp32 and/or bf16 (autocast)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (cpu device only)")
    ap.add_argument("--json-out", help="also append the rows here")
    a = ap.parse_args()
    if a.device == "cpu":
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch
    import torch.nn.functional as F
    from transformers import T5ForConditionalGeneration

    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for path in a.model.split(","):
        policy = T5ForConditionalGeneration.from_pretrained(
            path, dtype=torch.float32, dropout_rate=a.dropout).to(dev)
        policy.train()
        reference = None
        vocab = policy.config.vocab_size
        start = policy.config.decoder_start_token_id
        for dtype in a.dtypes.split(","):
            for step in a.steps.split(","):
                if step == "mario" and reference is None:
                    reference = copy.deepcopy(policy).eval()
                    for p in reference.parameters():
                        p.requires_grad_(False)
                for b in (int(x) for x in a.batch_sizes.split(",")):
                    row = time_row(torch, F, policy, reference, vocab, start, dev, sync, a,
                                   path, dtype, step, b)
                    line = json.dumps(row)
                    print(line, flush=True)
                    if a.json_out:
                        with open(a.json_out, "a") as f:
                            f.write(line + "\n")
        del policy, reference
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def time_row(torch, F, policy, reference, vocab, start, dev, sync, a, path, dtype, step, b):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, vocab, (b, a.src), generator=g)
    x[:, -1] = 1
    y = torch.randint(3, vocab, (b, a.tgt), generator=g)
    y[:, -1] = 1
    x, y = x.to(dev), y.to(dev)
    controls = a.controls if step == "mario" else 0
    starts = torch.full((b, 1), start, dtype=torch.long, device=dev)
    prefix = torch.arange(3, 3 + controls, device=dev).expand(b, controls)
    pol_dec = torch.cat([starts, prefix, y[:, :-1]], dim=1)
    ref_dec = torch.cat([starts, y[:, :-1]], dim=1)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.01)
    autocast = dtype == "bf16"

    def loss_of():
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=autocast):
            if step == "sft":
                return policy(input_ids=x, labels=y).loss
            logits = policy(input_ids=x, decoder_input_ids=pol_dec).logits[:, controls:, :]
            with torch.no_grad():
                ref_logits = reference(input_ids=x, decoder_input_ids=ref_dec).logits
        log_p = F.log_softmax(logits.float(), dim=-1)
        nll = -log_p.gather(2, y.unsqueeze(2)).squeeze(2)
        log_q = F.log_softmax(ref_logits.float(), dim=-1)
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)
        return nll.mean() + 0.1 * kl.mean()

    def median(v):  # the upper median, as mario reports it
        return sorted(v)[len(v) // 2]

    fwd, bwd, opt_t, total, losses = [], [], [], [], []
    for i in range(a.warmup + a.repeats):
        t0 = time.perf_counter()
        loss = loss_of()
        losses.append(float(loss))
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if i >= a.warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            opt_t.append(t3 - t2)
            total.append(t3 - t0)
    med = median(total)
    return {
        "engine": "torch", "model": os.path.basename(os.path.normpath(path)),
        "params": sum(p.numel() for p in policy.parameters()),
        "device": dev.type, "dtype": dtype, "step": step, "batch": b,
        "src": a.src, "tgt": a.tgt, "controls": controls, "times_s": total,
        "step_s_median": med, "updates_per_s": 1.0 / med,
        "tokens_per_s": b * (a.src + a.tgt) / med,
        "forward_s": median(fwd), "backward_s": median(bwd),
        "optimizer_s": median(opt_t),
        "loss_first": losses[0], "loss_last": losses[-1],
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    main()
