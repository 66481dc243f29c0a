"""How the old and the new tokenizer trainers segment the copy probe.

Old: SentencePiece-style Unigram with Metaspace pre-tokenization (mario's trainer before
2026-11-28, same `tokenizers` library and settings). New: byte-level BPE, min_frequency 8
(mario's trainer since). Usage: python3 segmentation.py DATA_DIR (from issue_probe.py).
Needs `pip install tokenizers`.
"""
import json
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

data = sys.argv[1]
texts = []
for line in open(f"{data}/train.jsonl"):
    r = json.loads(line)
    texts += [r["question"], r["rationale"], r["rationale"] + " So the answer is " + r["answer"] + "."]
texts = sorted(set(texts))


def unigram():
    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    t.decoder = decoders.Metaspace()
    tr = trainers.UnigramTrainer(vocab_size=8000, special_tokens=["<pad>", "</s>", "<unk>"],
                                 unk_token="<unk>", max_piece_length=16)
    t.train_from_iterator(texts, tr)
    return t


def bpe():
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    t.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=8000, min_frequency=8, special_tokens=["<pad>", "</s>", "<unk>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    t.train_from_iterator(texts, tr)
    return t


train_q = json.loads(open(f"{data}/train.jsonl").readline())["question"]
dev_q = json.loads(open(f"{data}/dev.jsonl").readline())
for name, tok in [("unigram (old)", unigram()), ("byte-level BPE (new)", bpe())]:
    print(f"## {name}: {tok.get_vocab_size()} pieces")
    print("train question:", tok.encode(train_q).tokens)
    print("dev question:  ", tok.encode(dev_q["question"]).tokens)
    print("dev target:    ", tok.encode(dev_q["rationale"] + " So the answer is " + dev_q["answer"] + ".").tokens)
