#!/usr/bin/env python3
"""Probe: can a plausibility classifier made from a world SFT checkpoint tell true from false
facts? Research probe behind training/reports/world/README.md ("A plausibility scorer that knows
the world"); the product's scorers are Rust (training/src/plausibility.rs).

usage: scripts/probe-plausibility.py RUN LABELS POOL LR STEPS [KNOW]
  RUN     a pipeline run folder (RUN/sft/best, RUN/data/world)
  LABELS  raw (teacher positives as they are) | clean (positives with a false fact -> negatives)
  POOL    last | mean (encoder state) | dec (decoder's last state) | decmin | decmean (a head on
          every decoder state, min / mean pooled) | inspect (no training: the cosine of the
          encoder's last and mean states between held-out positives and their word-shuffles,
          and the SFT model's per-token log-probabilities of a positive and its false fact)
  LR, STEPS  AdamW learning rate and updates (batch 32)
  KNOW    add every knowledge-base fact as a sentence, true and made false, KNOW times
Prints held-out AUCs (overall and per kind of negative) every 250 updates.
Needs torch, transformers and tokenizers (pip install torch transformers tokenizers).
"""
import json, random, sys, re, time, math
import torch, torch.nn as nn
from tokenizers import Tokenizer
from transformers import T5EncoderModel, T5ForConditionalGeneration
torch.set_num_threads(1)
RUN = sys.argv[1]; MODE = sys.argv[2]  # labels: raw|clean
POOL = sys.argv[3]; LR = float(sys.argv[4]); STEPS = int(sys.argv[5]); KNOW = int(sys.argv[6]) if len(sys.argv)>6 else 0
W = json.load(open(f'{RUN}/data/world/world.json'))
kb = W['kb']; facts = {(f['subject'], f['relation'], f['value']) for f in kb['facts']}
reading = {q['question'] for q in W['reading']}
colors = ['red','blue','green','yellow']
def parse(s):
    s = s.strip().rstrip('.')
    m = re.match(r'^A (\w+) (is made of|lives in|eats) (\w+)$', s)
    if m: return (m[1], {'is made of':'made_of','lives in':'lives_in','eats':'eats'}[m[2]], m[3])
    m = re.match(r'^(\w+) (floats on|sinks in) water$', s)
    if m: return (m[1].lower(), 'floats', 'yes' if m[2]=='floats on' else 'no')
    m = re.match(r'^(\w+) is (\w+)$', s)
    if m and m[2] in ('hot','cold'): return (m[1].lower(), 'climate', m[2])
    if m and m[2] in colors: return (m[1].lower(), 'color', m[2])
    return None
def sents(r): return [x.strip() for x in re.split(r'(?<=\.)', r) if x.strip()]
alts = {'made_of': kb['materials'], 'lives_in': kb['places'], 'eats': kb['foods']}
def falsify(r, rng):
    ss = sents(r); idx = [i for i,s in enumerate(ss) if parse(s)]
    if not idx: return None
    i = rng.choice(idx); s = ss[i]; (a, rel, v) = parse(s)
    if rel in alts:
        w = rng.choice([x for x in alts[rel] if (a, rel, x) not in facts]); ss[i] = re.sub(r'\w+\.$', w + '.', s)
    elif rel == 'floats': ss[i] = s.replace('floats on','sinks in') if v=='yes' else s.replace('sinks in','floats on')
    elif rel == 'climate': ss[i] = s.replace(' is hot', ' is cold') if v=='hot' else s.replace(' is cold',' is hot')
    else: ss[i] = s.replace(' is '+v, ' is '+rng.choice([c for c in colors if c!=v]))
    return ' '.join(ss)
T = [json.loads(l) for l in open(f'{RUN}/data/world/teacher_gpt3_train.jsonl')]
T = [t for t in T if t['question'] not in reading and t['predicted_rationale'].strip()]
rng = random.Random(0)
qs = sorted({t['question'] for t in T}); rng.shuffle(qs); held = set(qs[:len(qs)//10])
train, test = [], []
for t in T:
    r = t['predicted_rationale'].strip(); q = t['question']; dest = test if q in held else train
    ok = t['predicted_label'] == t['gold_label']
    fs = [parse(s) for s in sents(r)]; fs = [f for f in fs if f]
    true = all(f in facts for f in fs)
    if MODE == 'clean' and not true:
        dest.append((q+' '+r, 0.0, 'teacher_false', q, r)); continue
    if ok:
        dest.append((q+' '+r, 1.0, 'positive', q, r))
        ff = falsify(r, rng)
        if ff: dest.append((q+' '+ff, 0.0, 'false_fact', q, ff))
        w = r.split(); rng.shuffle(w); dest.append((q+' '+' '.join(w), 0.0, 'shuffled', q, ' '.join(w)))
    else:
        dest.append((q+' '+r, 0.0, 'wrong_label', q, r))
if KNOW:
    def sent(a, rel, v):
        if rel == 'made_of': return f'A {a} is made of {v}.'
        if rel == 'lives_in': return f'A {a} lives in {v}.'
        if rel == 'eats': return f'A {a} eats {v}.'
        if rel == 'floats': return f'{a.capitalize()} ' + ('floats on water.' if v == 'yes' else 'sinks in water.')
        return f'{a.capitalize()} is {v}.'
    for _ in range(KNOW):
        for f in kb['facts']:
            s0 = sent(f['subject'], f['relation'], f['value'])
            train.append((s0, 1.0, 'k_pos', '', s0)); f0 = falsify(s0, rng); train.append((f0, 0.0, 'k_neg', '', f0))
print('train', len(train), 'test', len(test), {k: sum(1 for x in train if x[2]==k) for k in set(x[2] for x in train)}, flush=True)
tok = Tokenizer.from_file(f'{RUN}/sft/best/tokenizer.json')
def enc(batch):
    ids = [tok.encode(x[0]).ids[:128] for x in batch]; L = max(map(len, ids))
    inp = torch.tensor([i + [0]*(L-len(i)) for i in ids]); mask = (inp != 0).long()
    for k,i in enumerate(ids): mask[k,:len(i)] = 1
    return inp, mask, torch.tensor([len(i) for i in ids])
if POOL.startswith('dec'):
    model = T5ForConditionalGeneration.from_pretrained(f'{RUN}/sft/best')
else:
    model = T5EncoderModel.from_pretrained(f'{RUN}/sft/best')
head = nn.Linear(model.config.d_model, 1)
nn.init.normal_(head.weight, std=0.02); nn.init.zeros_(head.bias)
params = list(model.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
def logits(batch, train_mode):
    model.train(train_mode)
    inp, mask, lens = enc(batch)
    if POOL.startswith('dec'):
        # question -> encoder, rationale -> decoder target; pool the decoder's last state
        qs_ = [x[3] for x in batch]; rs = [x[4] for x in batch]
        qi = [tok.encode(q).ids for q in qs_]; ri = [tok.encode(r).ids[:96] for r in rs]
        Lq = max(map(len, qi)); Lr = max(map(len, ri))
        qin = torch.tensor([i+[0]*(Lq-len(i)) for i in qi]); qm = torch.tensor([[1]*len(i)+[0]*(Lq-len(i)) for i in qi])
        din = torch.tensor([[0]+i+[0]*(Lr-len(i)) for i in ri])[:, :Lr+1]
        dm = torch.tensor([[1]*(len(i)+1)+[0]*(Lr-len(i)) for i in ri])[:, :Lr+1]
        out = model(input_ids=qin, attention_mask=qm, decoder_input_ids=din, decoder_attention_mask=dm, output_hidden_states=True)
        h = out.decoder_hidden_states[-1]
        last = torch.tensor([len(i) for i in ri])
        if POOL == 'dec': return head(h[torch.arange(len(batch)), last]).squeeze(-1)
        per = head(h).squeeze(-1)  # (B, T)
        if POOL == 'decmin': return per.masked_fill(dm == 0, 1e4).min(1).values
        return (per * dm).sum(1) / dm.sum(1)
    h = model(input_ids=inp, attention_mask=mask).last_hidden_state
    if POOL == 'last': p = h[torch.arange(len(batch)), lens-1]
    else: p = (h*mask.unsqueeze(-1)).sum(1)/mask.sum(1, keepdim=True)
    return head(p).squeeze(-1)
def split_qr(x):
    if len(x) == 5: return x
    q = x[0].split('?')[0] + '?' if '?' in x[0] else ''
    return (x[0], x[1], x[2], q, x[0][len(q):].strip())
train = [split_qr(x) for x in train]; test = [split_qr(x) for x in test]
if POOL == 'inspect':
    full = T5ForConditionalGeneration.from_pretrained(f'{RUN}/sft/best'); full.eval()
    pos = [x for x in test if x[2] == 'positive']
    shuf = {x[3]: x for x in test if x[2] == 'shuffled'}
    fals = {x[3]: x for x in test if x[2] == 'false_fact'}
    cos_last, cos_mean = [], []
    with torch.no_grad():
        for x in pos[:50]:
            if x[3] not in shuf: continue
            hs = [full.encoder(input_ids=torch.tensor([tok.encode(t[0]).ids])).last_hidden_state[0] for t in (x, shuf[x[3]])]
            cos_last.append(torch.cosine_similarity(hs[0][-1], hs[1][-1], dim=0).item())
            cos_mean.append(torch.cosine_similarity(hs[0].mean(0), hs[1].mean(0), dim=0).item())
        print(f'encoder state cosine, positive vs its shuffle ({len(cos_last)} pairs): last {sum(cos_last)/len(cos_last):.4f}, mean {sum(cos_mean)/len(cos_mean):.4f}')
        x = next(p for p in pos if p[3] in fals)
        for t in (x, fals[x[3]]):
            e = tok.encode(t[4]); ids = e.ids[:-1]
            lg = full(input_ids=torch.tensor([tok.encode(t[3]).ids]), decoder_input_ids=torch.tensor([[0] + ids[:-1]])).logits[0].log_softmax(-1)
            lp = lg[torch.arange(len(ids)), torch.tensor(ids)].tolist()
            print(t[2], t[3], ' '.join(f'{w}:{v:.1f}' for w, v in zip(e.tokens, lp)))
    sys.exit(0)
def auc(s, l):
    pos = [a for a,b in zip(s,l) if b>0.5]; neg = [a for a,b in zip(s,l) if b<0.5]
    if not pos or not neg: return float('nan')
    c = sum((p>n) + 0.5*(p==n) for p in pos for n in neg); return c/len(pos)/len(neg)
def evaluate():
    with torch.no_grad():
        s = []
        for i in range(0, len(test), 64): s += logits(test[i:i+64], False).tolist()
    out = {'all': auc(s, [x[1] for x in test])}
    for k in sorted(set(x[2] for x in test)) :
        if k == 'positive': continue
        sel = [(a, x[1]) for a, x in zip(s, test) if x[2] in (k, 'positive')]
        out[k] = round(auc([a for a,_ in sel], [b for _,b in sel]), 3)
    return out
t0 = time.time(); bs = 32
for step in range(1, STEPS+1):
    batch = rng.sample(train, bs)
    y = torch.tensor([x[1] for x in batch])
    loss = nn.functional.binary_cross_entropy_with_logits(logits(batch, True), y)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    if step % 250 == 0: print(step, round(loss.item(),3), evaluate(), round(time.time()-t0), flush=True)
