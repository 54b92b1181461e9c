#!/usr/bin/env python3
"""The 8B-shaped pp=2 run of docs/benchmarks.md (a documented benchmark, not a CI test).

Writes a random LLaMA of Llama 3 8B's shape (hidden 4096, 32 layers, 32/8 heads, intermediate 14336,
vocab 128256) in bf16 as 4 safetensors files and an index (tessera bench-model --random-llama
--shards 4 --write-only, streamed to disk), unless DIR already holds it. Then serves it with
`tessera local --workers 0 --plan pp=2` and two `tessera worker` processes, and reports:
- each worker's load time (worker start to its "shard loaded" log line), the bytes of its shard and
  its RSS right then (VmRSS of /proc/PID/status), and its ratio to the shard;
- the time from the workers' start to the API's /ready;
- the time to the first streamed token and to all 8 of a greedy completion of a 16-token prompt
  (token ids: the random model has no tokenizer).

Usage: python3 docs/bench8b.py TESSERA_BINARY DIR [--keep]   (DIR: about 16 GB; removed unless --keep)
Standard library only.
"""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request

SHAPE = "4096,32,32,8,14336,128256,bf16"


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except OSError:
        return None


def main():
    binary, folder = os.path.abspath(sys.argv[1]), sys.argv[2]
    keep = "--keep" in sys.argv[3:]
    nice = ["nice"]
    if not os.path.exists(os.path.join(folder, "model.safetensors.index.json")):
        t = time.monotonic()
        subprocess.run(nice + [binary, "bench-model", "--model", folder, "--random-llama", SHAPE, "--shards", "4",
                               "--write-only"], check=True)
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"wrote {size / 1e9:.2f} GB in {time.monotonic() - t:.0f}s: {sorted(os.listdir(folder))}")
    logs = tempfile.mkdtemp(prefix="bench8b-")
    port = 18080
    procs = []
    try:
        local_out = open(os.path.join(logs, "local.out"), "w+")
        procs.append(subprocess.Popen(nice + [binary, "local", "--model", folder, "--workers", "0", "--plan", "pp=2",
                                              "--cache-tokens", "256", "--listen", f"127.0.0.1:{port}",
                                              # a CPU step of an 8B stage takes seconds: not a lost worker
                                              "--step-timeout", "10m"],
                                      stdout=local_out, stderr=open(os.path.join(logs, "local.err"), "w")))
        while True:
            local_out.seek(0)
            text = local_out.read()
            m = re.search(r"^join: .* --etcd (\S+) --nats (\S+)", text, re.M)
            if m:
                break
            if procs[0].poll() is not None:
                sys.exit(f"tessera local exited: {open(os.path.join(logs, 'local.err')).read()}")
            time.sleep(0.2)
        etcd, nats = m.group(1), m.group(2)
        start = time.monotonic()
        workers = []
        for i in range(2):
            err = os.path.join(logs, f"worker{i}.err")
            p = subprocess.Popen(nice + [binary, "worker", "--cluster", "local", "--etcd", etcd, "--nats", nats,
                                         "--memory", "10GiB", "--step-timeout", "10m", "--lease-ttl", "30s"],
                                 stderr=open(err, "w"))
            procs.append(p)
            workers.append(dict(proc=p, err=err))
        ready = None
        while ready is None or any("loaded" not in w for w in workers):
            for w in workers:
                if w["proc"].poll() is not None:
                    sys.exit(f"a worker exited: {open(w['err']).read()}")
                if "loaded" in w:
                    continue
                m = re.search(r"shard loaded.*stage=(\d+).*bytes=(\d+)", open(w["err"]).read())
                if m:
                    w.update(loaded=time.monotonic() - start, rss=rss_bytes(w["proc"].pid),
                             stage=int(m.group(1)), bytes=int(m.group(2)))
            if ready is None and get(f"http://127.0.0.1:{port}/ready") == 200:
                ready = time.monotonic() - start
            time.sleep(0.25)
        for w in sorted(workers, key=lambda w: w["stage"]):
            print(f"stage {w['stage']}: loaded in {w['loaded']:.1f}s, shard {w['bytes'] / 2**30:.2f} GiB, "
                  f"RSS {w['rss'] / 2**30:.2f} GiB = {w['rss'] / w['bytes']:.3f}x the shard")
        print(f"API ready {ready:.1f}s after the workers started")
        body = json.dumps({"prompt": list(range(100, 116)), "max_tokens": 8, "temperature": 0, "stream": True,
                           "ignore_eos": True, "return_token_ids": True}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body,
                                     {"Content-Type": "application/json"})
        t = time.monotonic()
        first, ids = None, []
        with urllib.request.urlopen(req, timeout=600) as r:
            for line in r:
                line = line.decode().strip()
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                for c in chunk.get("choices", []):
                    got = c.get("token_ids") or []
                    if got and first is None:
                        first = time.monotonic() - t
                    ids += got
        total = time.monotonic() - t
        print(f"first token {first:.1f}s, 8 tokens {total:.1f}s ({(total - first) / 7:.2f}s per decode step): {ids}")
        for w in sorted(workers, key=lambda w: w["stage"]):
            print(f"stage {w['stage']}: RSS after generating {rss_bytes(w['proc'].pid) / 2**30:.2f} GiB")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait()
        print(f"logs: {logs}")
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
