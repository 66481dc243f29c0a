#!/usr/bin/env python3
"""Re-score the outputs of two evaluation files with a likelihood plausibility scorer and pair
them question by question (training/reports/world/README.md, "The scorer fine-tuned").

usage: scripts/rescore-plausibility.py SCORER_DIR A.jsonl B.jsonl
  SCORER_DIR  a likelihood scorer folder (config.json, model.safetensors, tokenizer.json,
              plausibility.json with `pooling: min`, and `prompt` when it reads one)
  A, B        per-question output files in the same question order (e.g. a pipeline's
              test/sft.jsonl and test/mario.jsonl)
Prints each file's mean score, and B - A with its 95 % interval (normal approximation) and how
many questions moved by more than 0.01 either way. Needs torch, transformers and tokenizers.
"""
import json, sys, torch, statistics
from tokenizers import Tokenizer
from transformers import T5ForConditionalGeneration
torch.set_num_threads(1)
d = sys.argv[1]
cal = json.load(open(f'{d}/plausibility.json'))
if cal.get('knowledge') or cal.get('pooling', 'min') != 'min':
    sys.exit(f'{d}: this script scores the question (or prompt) with min pooling; '
             'for a scorer with knowledge statements or mean pooling use '
             'scripts/stereotype-probe.py')
tok = Tokenizer.from_file(f'{d}/tokenizer.json'); m = T5ForConditionalGeneration.from_pretrained(d); m.eval()
def score(q, out):
    q = cal.get('prompt') or q  # a statement scorer reads its prompt, not the question
    r = out.rsplit('So the answer is', 1)[0].strip()
    ri = tok.encode(r).ids[:-1]
    if not ri: return 0.0
    with torch.no_grad():
        lg = m(input_ids=torch.tensor([tok.encode(q).ids]), decoder_input_ids=torch.tensor([[0]+ri[:-1]])).logits[0].log_softmax(-1)
    mn = lg[torch.arange(len(ri)), torch.tensor(ri)].min().item()
    import math
    return 1/(1+math.exp(-(mn-cal['bias'])/cal['temperature']))
res = {}
for name in sys.argv[2:]:
    R = [json.loads(l) for l in open(name)]
    res[name] = [score(r['question'], r['output']) for r in R]
    print(name, round(statistics.mean(res[name]), 4))
a, b = list(res.values())[:2]
diff = [y - x for x, y in zip(a, b)]
mu = statistics.mean(diff); se = statistics.stdev(diff)/len(diff)**0.5
print('paired diff', round(mu,4), [round(mu-1.96*se,4), round(mu+1.96*se,4)], 'lower>0.01', sum(x< -0.01 for x in diff), 'higher>0.01', sum(x>0.01 for x in diff))
