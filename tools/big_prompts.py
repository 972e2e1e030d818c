#!/usr/bin/env python3
"""Issue 12's big-prompt reproducer against a real `lmrs serve`: six concurrent 3.9 MB
prompts, `/health` timed all the while, the server's RSS before, at its peak and 2 s after.

    tools/big_prompts.py target/debug/lmrs tests/fixtures/llama-tiny [SERVE FLAGS...]

With the defaults the prompts are refused by the byte limit before tokenizing; with
`--max-input-bytes 8000000` they are tokenized (off the HTTP threads, then refused on their
token count), which shows /health staying responsive and RSS returning near its baseline.
Prints one JSON line.
"""
import json, os, socket, subprocess, sys, threading, time, urllib.request
binary, model = sys.argv[1], sys.argv[2]
p = subprocess.Popen([binary, "serve", "--model", model, "--port", "0"] + sys.argv[3:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
addr = None
while addr is None:
    line = p.stdout.readline()
    if "listening on http://" in line:
        addr = line.split("listening on http://")[1].split()[0]
url = f"http://{addr}"
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
def health():
    t = time.time(); urllib.request.urlopen(url + "/health", timeout=60).read(); return time.time() - t
time.sleep(0.5)
base = rss()
prompt = ("lorem ipsum dolor sit amet " * 150000)[:3_900_000]
body = json.dumps({"model": os.path.basename(model), "prompt": prompt, "max_tokens": 1}).encode()
res = []
def post():
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    t = time.time()
    try:
        urllib.request.urlopen(req, timeout=120).read(); res.append((200, time.time() - t))
    except urllib.error.HTTPError as e:
        res.append((e.code, time.time() - t, json.loads(e.read())["error"]["message"][:90]))
th = [threading.Thread(target=post) for _ in range(6)]
for t in th: t.start()
lat = []
peak = base
while any(t.is_alive() for t in th):
    lat.append(health()); peak = max(peak, rss()); time.sleep(0.05)
for t in th: t.join()
time.sleep(2)
after = rss()
print(json.dumps({"rss_mib_before": base, "rss_mib_peak": peak, "rss_mib_after": after,
                  "health_max_s": round(max(lat), 3) if lat else None, "health_samples": len(lat),
                  "answers": res[:2], "n": len(res)}))
p.terminate(); p.wait()
