import json,sys
from tokenizers import Tokenizer, models, trainers, pre_tokenizers, normalizers, decoders, processors
files=sys.argv[1].split(","); v=int(sys.argv[2]); mf=int(sys.argv[3]); out=sys.argv[4]
texts=[]
for f in files:
  for l in open(f):
    r=json.loads(l); texts+= [r["question"], r["rationale"], r["rationale"]+" So the answer is "+r["answer"]+"."]
texts=sorted(set(texts))
t=Tokenizer(models.BPE())
t.normalizer=normalizers.NFKC()
t.pre_tokenizer=pre_tokenizers.ByteLevel(add_prefix_space=True)
t.decoder=decoders.ByteLevel()
tr=trainers.BpeTrainer(vocab_size=v, min_frequency=mf, special_tokens=["<pad>","</s>","<unk>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
t.train_from_iterator(texts, tr)
t.post_processor=processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>",1)])
t.save(out)
print(t.get_vocab_size(), t.encode("Is the name dubuze and is it yes?").tokens, t.encode("The name is seru. So the answer is yes.").tokens)
print(t.decode(t.encode("The name is (A) seru. So the answer is yes.").ids))
