"""Latency and throughput of `sentiloop serve` under a bounded load on 127.0.0.1.

The server runs in its own process (`python -m sentiloop.cli serve`), so the load generator does
not share its GIL. Each client thread sends a fixed number of requests per configuration
(bounded: no open-ended soak), either over one HTTP/1.1 keep-alive connection (`keepalive`) or
on a new connection per request (`per-request`). Every failure counts as an error: a non-200
status, a reset or refused connection, a timeout. Reported per configuration (connection mode x
batch size x concurrency): p50/p90/p99 request latency, requests/s, texts/s and errors.

    python bench/serve_latency.py --bundle models/bundle --texts data/final/sentences.sqlite \
        --requests 400 --batch 1 32 --concurrency 1 4 --markdown
    # a lexicon bundle fitted on the embedded sample corpus (no `dvc repro` needed):
    python bench/serve_latency.py --build-bundle /tmp/lexicon-bundle --requests 4000 --batch 1 \
        --concurrency 64 --mode keepalive per-request --markdown
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


def build_lexicon_bundle(out: str, rows: int = 30_000) -> str:
    """A lexicon member fitted (conf/'s models.lexicon) on the sample corpus, bundled at `out`."""
    sys.path.insert(0, str(ROOT / "src"))
    import pandas as pd

    from sentiloop.bundle import build_bundle
    from sentiloop.models.base import build_model
    from sentiloop.sample import packaged_path
    from sentiloop.settings import compose_settings

    s = compose_settings()
    df = pd.read_csv(packaged_path(), encoding_errors="replace").dropna(subset=["text"])
    df = df.sample(n=min(rows, len(df)), random_state=0)
    classes = list(s.data.classes)
    model = build_model("lexicon", classes, s.models.lexicon.model_dump(), language="en", seed=0)
    model.fit(df["text"].astype(str).tolist(), np.array([classes.index(v) for v in df["sentiment"]]))
    member = Path(out + ".member")
    model.save(member)
    build_bundle(
        out, member_dirs={"lexicon": member}, weights=None, classes=classes, language="en", gate={"deployable": True}
    )
    return out


def start_server(bundle: str, port: int, max_batch: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sentiloop.cli",
            "serve",
            "--bundle",
            bundle,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-batch",
            str(max_batch),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
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


def run_load(port: int, texts: list[str], batch: int, concurrency: int, requests: int, mode: str = "keepalive") -> dict:
    per_worker = max(1, requests // concurrency)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    go = threading.Barrier(concurrency + 1)

    def worker(seed: int, wait: bool = True) -> None:
        rng = random.Random(seed)
        con = None
        mine = []
        if wait:
            go.wait()
        for _ in range(per_worker):
            body = json.dumps({"texts": rng.sample(texts, batch)} if batch > 1 else {"text": rng.choice(texts)})
            t0 = time.perf_counter()
            try:
                if con is None:
                    con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                con.request("POST", "/predict", body, {"Content-Type": "application/json"})
                resp = con.getresponse()
                resp.read()
                kind = None if resp.status == 200 else f"http_{resp.status}"
            except (OSError, http.client.HTTPException) as e:
                kind = type(e).__name__
                con.close()
                con = None
            mine.append(time.perf_counter() - t0)
            if mode == "per-request" and con is not None:
                con.close()
                con = None
            if kind:
                with lock:
                    errors[kind] = errors.get(kind, 0) + 1
        if con is not None:
            con.close()
        with lock:
            latencies.extend(mine)

    # warm-up: first requests pay for lazy imports and caches
    worker(10_000, wait=False)
    latencies.clear()
    errors.clear()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    go.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    n = len(lat)
    return {
        "mode": mode,
        "batch": batch,
        "concurrency": concurrency,
        "requests": n,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "req_per_s": n / wall,
        "texts_per_s": n * batch / wall,
        "wall_s": wall,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="models/bundle")
    ap.add_argument(
        "--texts",
        default="data/final/sentences.sqlite",
        help="store whose test split supplies the texts (synthetic texts when absent)",
    )
    ap.add_argument("--requests", type=int, default=400, help="requests per configuration")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument(
        "--mode",
        nargs="+",
        default=["keepalive"],
        choices=["keepalive", "per-request"],
        help="one keep-alive connection per client, or a new connection per request",
    )
    ap.add_argument(
        "--build-bundle", metavar="DIR", help="first fit a lexicon on the embedded sample corpus and bundle it at DIR"
    )
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    a = ap.parse_args(argv)
    if a.build_bundle:
        a.bundle = build_lexicon_bundle(a.build_bundle)
    texts = load_texts(a.texts)
    port = free_port()
    proc = start_server(a.bundle, port, max(a.batch))
    results = []
    try:
        for mode, batch, conc in [(m, b, c) for m in a.mode for b in a.batch for c in a.concurrency]:
            r = run_load(port, texts, batch, conc, a.requests, mode)
            results.append(r)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    manifest = json.loads((Path(a.bundle) / "manifest.json").read_text())
    if a.markdown:
        print(
            f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, bundle members "
            f"{list(manifest['members'])}, {len(texts)} distinct texts\n"
        )
        print(
            "| connection | batch | concurrency | requests | p50 ms | p90 ms | p99 ms | max ms | req/s | texts/s | errors |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            kinds = ", ".join(f"{k} {v}" for k, v in r["error_kinds"].items())
            print(
                f"| {r['mode']} | {r['batch']} | {r['concurrency']} | {r['requests']} | {r['p50_ms']:.1f} | "
                f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['req_per_s']:.0f} | "
                f"{r['texts_per_s']:.0f} | {r['errors']}{f' ({kinds})' if kinds else ''} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
