"""Latency and throughput of `sentiloop serve` under a bounded load on 127.0.0.1.

The server runs in its own process (`python -m sentiloop.cli serve`), so the load generator does
not share its GIL; the client keeps one HTTP/1.1 keep-alive connection per worker thread and sends
a fixed number of requests per configuration (bounded: no open-ended soak). Reported per
configuration (batch size x concurrency): p50/p90/p99 request latency, requests/s and texts/s.

    python bench/serve_latency.py --bundle models/bundle --texts data/final/sentences.sqlite \
        --requests 400 --batch 1 32 --concurrency 1 4 --markdown
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_texts(path: str | None, limit: int = 2000) -> list[str]:
    if path and Path(path).exists():
        sys.path.insert(0, str(ROOT / "src"))
        from sentiloop.store import iter_chunks
        texts: list[str] = []
        for chunk in iter_chunks(path, ("text",), where="split = 'test'", chunk_size=1000):
            texts.extend(chunk["text"].astype(str))
            if len(texts) >= limit:
                break
        if texts:
            return texts[:limit]
    rng = random.Random(0)
    words = "love hate great awful meeting monday flight delayed thanks terrible okay the a my".split()
    return [" ".join(rng.choices(words, k=rng.randint(4, 20))) for _ in range(limit)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: str, port: int, max_batch: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "sentiloop.cli", "serve", "--bundle", bundle,
                             "--host", "127.0.0.1", "--port", str(port), "--max-batch", str(max_batch)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            con = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            con.request("GET", "/health")
            if con.getresponse().status == 200:
                con.close()
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy in 120 s")


def run_load(port: int, texts: list[str], batch: int, concurrency: int, requests: int) -> dict:
    per_worker = max(1, requests // concurrency)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for _ in range(per_worker):
            body = json.dumps({"texts": rng.sample(texts, batch)} if batch > 1
                              else {"text": rng.choice(texts)})
            t0 = time.perf_counter()
            con.request("POST", "/predict", body, {"Content-Type": "application/json"})
            resp = con.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status != 200:
                with lock:
                    errors[0] += 1
        con.close()
        with lock:
            latencies.extend(mine)

    # warm-up: first requests pay for lazy imports and caches
    run_once = [threading.Thread(target=worker, args=(10_000 + i,)) for i in range(1)]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in run_once:
        t.start()
        t.join()
    latencies.clear()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    n = len(lat)
    return {"batch": batch, "concurrency": concurrency, "requests": n, "errors": errors[0],
            "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
            "p99_ms": float(np.percentile(lat, 99)), "req_per_s": n / wall,
            "texts_per_s": n * batch / wall, "wall_s": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="models/bundle")
    ap.add_argument("--texts", default="data/final/sentences.sqlite",
                    help="store whose test split supplies the texts (synthetic texts when absent)")
    ap.add_argument("--requests", type=int, default=400, help="requests per configuration")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    a = ap.parse_args(argv)
    texts = load_texts(a.texts)
    port = free_port()
    proc = start_server(a.bundle, port, max(a.batch))
    results = []
    try:
        for batch in a.batch:
            for conc in a.concurrency:
                r = run_load(port, texts, batch, conc, a.requests)
                results.append(r)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}),
                      flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    manifest = json.loads((Path(a.bundle) / "manifest.json").read_text())
    if a.markdown:
        print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
              f"{os.cpu_count()} cores, Python {platform.python_version()}, bundle members "
              f"{list(manifest['members'])}, {len(texts)} distinct texts\n")
        print("| batch | concurrency | requests | p50 ms | p90 ms | p99 ms | req/s | texts/s | errors |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['batch']} | {r['concurrency']} | {r['requests']} | {r['p50_ms']:.1f} | "
                  f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['req_per_s']:.0f} | "
                  f"{r['texts_per_s']:.0f} | {r['errors']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
