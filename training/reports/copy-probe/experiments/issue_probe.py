import json, random, sys, os
seed=int(sys.argv[1]); ntrain=int(sys.argv[2]); ndev=int(sys.argv[3]); out=sys.argv[4]
r=random.Random(seed)
cons="b d f g k l m n p r s t v z".split(); vow="a e i o u".split()
syl=[c+v for c in cons for v in vow]
def name():
    return "".join(r.choice(syl) for _ in range(r.choice([2,2,3])))
names=set()
while len(names)<ntrain+ndev: names.add(name())
names=sorted(names); r.shuffle(names)
os.makedirs(out,exist_ok=True)
def rec(n):
    a=r.choice(["yes","no"])
    return {"question":f"Is the name {n} and is it {a}?","rationale":f"The name is {n}.","answer":a}
for split,ns in [("train",names[:ntrain]),("dev",names[ntrain:])]:
    with open(f"{out}/{split}.jsonl","w") as f:
        for n in ns: f.write(json.dumps(rec(n))+"\n")
