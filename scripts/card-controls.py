#!/usr/bin/env python3
"""card-controls.py MODEL [PORT]: the control-token table of a model card. Starts mario-server
on MODEL (a checkpoint folder with examples.json), sends every example question to
`POST /rationalize` under the best and worst controls and each reward's worst bin (greedy, 48
new tokens, as README's first `curl`), and prints one markdown row per question and control:
question (gold) | control | output. MARIO_SERVER names the server binary (default
target/release/mario-server)."""
import json
import os
import subprocess
import sys
import time
import urllib.request

if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
model, port = sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else "18123"
server = os.environ.get("MARIO_SERVER", "target/release/mario-server")
base = f"http://127.0.0.1:{port}"


def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))


srv = subprocess.Popen([server, "--model", model, "--port", port],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    info = None
    for _ in range(240):
        try:
            if urllib.request.urlopen(base + "/ready").status == 200:
                info = json.load(urllib.request.urlopen(base + "/info"))
                break
        except OSError:
            time.sleep(0.5)
    if info is None:
        sys.exit(f"{server} --model {model}: not ready after 2 minutes")
    # the worst bin of each reward, read from the server's reward list
    worst = [{r["name"]: len(r["tokens"]) - 1} for r in info["rewards"]]
    print("| question (gold) | control | output |\n|---|---|---|")
    for e in json.load(open(f"{model}/examples.json")):
        for i, control in enumerate(["best", "worst"] + worst):
            r = post("/rationalize", {"question": e["question"], "control": control,
                                      "parameters": {"max_new_tokens": 48, "temperature": 0}})
            q = f'{e["question"]} ({e.get("gold", "?")})' if i == 0 else ""
            c = control if isinstance(control, str) else f"`{json.dumps(control)}`"
            print(f'| {q} | {c} | {r["results"][0]["text"]} |')
finally:
    srv.terminate()
