"""Review app speed on a large run: stage review_data's time and memory, then the app in a real
headless Chromium: first paint of Overview and the next review-queue row. See docs/benchmarks.md.

    python bench/app_speed.py                         # 712,383 rows (NSMC's size), 3 iterations
    python bench/app_speed.py --rows 50000 --next-rows 10

The run is synthetic (no model is trained): a store of N rows (80/10/10 split, two classes), 6%
of the train labels changed over 3 iterations with their label_history, 200 locked human labels,
the lexicon member's and the ensemble's probabilities in data/final/predictions.parquet, and the
per-iteration metrics files: the same files, at the same size, as a lexicon-only NSMC run, which
is what the review_data stage and the app read. Needs chromium (apt-get install chromium) and
playwright for the browser figures; without them only the stage is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from sentiloop.jsonio import write_json  # noqa: E402
from sentiloop.layout import Layout  # noqa: E402
from sentiloop.store import create_sentences  # noqa: E402

CLASSES = ["negative", "positive"]
WORDS = (
    "영화 정말 재밌다 최고 지루 별로 연기 스토리 감동 시간 아깝다 배우 음악 다시 보고 싶다 "
    "완전 최악 너무 좋았다 그냥 그런 내용 결말 허무 추천 강추 비추 the movie was good bad"
).split()


def settings(n_iter: int):
    from sentiloop.settings import compose_settings

    return compose_settings(["ensemble.members=[lexicon]", f"loop.max_iterations={n_iter}"]).merged(
        {
            "data": {"classes": CLASSES, "label_map": {c: c for c in CLASSES}, "language": "ko"},
            "ensemble": {"weights": {"lexicon": 1.0}},
        }
    )


def synthetic_run(root: Path, n: int, n_iter: int, seed: int) -> tuple[object, Layout]:
    """The files a finished lexicon-only run of n rows leaves behind (see the module doc)."""
    rng = np.random.default_rng(seed)
    L = Layout(root)
    s = settings(n_iter)
    (root / "params.yaml").write_text(yaml.safe_dump(s.as_params(), sort_keys=False))
    ids = np.array([f"n{i}" for i in range(n)])
    split = rng.choice(np.array(["train", "dev", "test"]), size=n, p=[0.8, 0.1, 0.1])
    label = rng.choice(np.array(CLASSES), size=n)
    lengths = rng.integers(2, 12, size=n)
    vocab = np.array(WORDS)
    texts = [" ".join(vocab[rng.integers(0, len(vocab), size=k)]) for k in lengths]
    current = label.copy()
    train = np.flatnonzero(split == "train")
    changed = rng.choice(train, size=int(0.06 * len(train)), replace=False)
    flip = {"negative": "positive", "positive": "negative"}
    current[changed] = [flip[x] for x in label[changed]]
    it_of = rng.integers(1, n_iter + 1, size=len(changed))
    locked = np.zeros(n, dtype=int)
    human = rng.choice(np.setdiff1d(train, changed), size=200, replace=False)
    locked[human] = 1
    current[human] = [flip[x] for x in label[human]]
    L.final_store.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(L.final_store)
    create_sentences(con)
    con.executemany(
        "INSERT INTO sentences (id, text, label, split, current_label, locked) VALUES (?,?,?,?,?,?)",
        zip(ids.tolist(), texts, label.tolist(), split.tolist(), current.tolist(), locked.tolist()),
    )
    hist = [
        (ids[i], int(k), label[i], current[i], "ensemble", float(rng.uniform(0.8, 1.0)), "threshold 0.8")
        for i, k in zip(changed, it_of)
    ]
    hist += [(ids[i], 1, label[i], current[i], "human", 1.0, "reviewer=ann;file=r.csv") for i in human]
    con.executemany(
        "INSERT INTO label_history (sentence_id, iteration, old_label, new_label, source, confidence, "
        "detail) VALUES (?,?,?,?,?,?,?)",
        hist,
    )
    con.commit()
    con.close()
    p_pos = np.clip(np.where(current == "positive", rng.beta(5, 2, size=n), rng.beta(2, 5, size=n)), 1e-4, 1 - 1e-4)
    probs = np.stack([1 - p_pos, p_pos], axis=1)
    frame = pd.DataFrame({"id": ids, "split": split})
    for name in ("lexicon", "ens"):
        for j, c in enumerate(CLASSES):
            frame[f"p_{name}_{c}"] = probs[:, j]
    frame["ens_label"] = np.array(CLASSES)[probs.argmax(axis=1)]
    frame["confidence"] = probs.max(axis=1)
    frame["agreement"] = 1.0
    frame.to_parquet(L.final_predictions, index=False)
    n_train = len(train)
    for k in range(0, n_iter + 1):
        f1 = 0.80 + 0.01 * k
        entry = {
            "dev": {"macro_f1": f1, "accuracy": f1 + 0.01, "n": int((split == "dev").sum())},
            "test": {"macro_f1": f1 - 0.01, "accuracy": f1, "n": int((split == "test").sum())},
        }
        write_json(
            L.eval(k),
            {
                "iteration": f"it{k}",
                "ensemble": entry,
                "members": {"lexicon": {**entry, "weight": 1.0, "dict_change_rate": 0.01}},
            },
        )
        if k:
            ch = int((it_of == k).sum())
            write_json(
                L.iteration_metrics(k),
                {
                    "k": k,
                    "changes": ch,
                    "label_change_rate": ch / n_train,
                    "passed_through": False,
                    "corrections_by_source": {"ensemble": ch, **({"human": 200} if k == 1 else {})},
                    "class_distribution": {c: int((current[train] == c).sum()) for c in CLASSES},
                    "locked": 200,
                },
            )
    write_json(
        L.summary,
        {
            "termination_reason": "max_iterations",
            "converged_at": n_iter,
            "iterations_run": n_iter,
            "labels_changed_total": int(len(changed)),
        },
    )
    write_json(L.gate_json, {"deployable": True, "f1": 0.83, "threshold": 0.75, "attempts": 1, "alerted": False})
    return s, L


STAGE = """
import json, time
from pathlib import Path
from sentiloop.layout import Layout
from sentiloop.review_data import build
from sentiloop.settings import load
c0 = time.process_time()
build(load("params.yaml"), Layout(Path(".")))
# VmHWM: this process's own peak (ru_maxrss would carry the parent's across fork + exec)
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print(json.dumps({"cpu_s": round(time.process_time() - c0, 1), "peak_rss_mib": round(hwm / 1024)}))
"""


def browser_figures(root: Path, next_rows: int, loads: int) -> dict:
    from playwright.sync_api import expect, sync_playwright

    sys.path.insert(0, str(ROOT / "src"))
    from sentiloop.cli import app_command

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(root / "streamlit.log", "w")
    proc = subprocess.Popen(
        app_command(root, "127.0.0.1", port),
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SENTILOOP_ROOT": str(root)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("streamlit did not start: " + (root / "streamlit.log").read_text()[-2000:])
            time.sleep(0.3)
        out: dict = {"first_paint_s": [], "complete_s": [], "next_row_ms": []}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
            for _ in range(loads):  # the first load finds the server's caches cold
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(120_000)
                t0 = time.perf_counter()
                page.goto(url)
                # first paint: the page's headline figures (rows, termination, gate) are on screen
                expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=120_000)
                expect(page.get_by_text("max_iterations").first).to_be_visible(timeout=120_000)
                out["first_paint_s"].append(time.perf_counter() - t0)
                # complete: the script has finished and the last section is drawn
                expect(page.get_by_role("heading", name="Test and dev metrics")).to_be_visible(timeout=120_000)
                expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=120_000)
                out["complete_s"].append(time.perf_counter() - t0)
                page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_text("Review queue", exact=True).click()
            page.get_by_role("textbox", name="Reviewer").fill("bench")
            page.get_by_role("textbox", name="Reviewer").press("Enter")
            expect(page.get_by_text("#1 · id")).to_be_visible(timeout=120_000)
            # focus off the text field (its blur can start a rerun that swallows a key pressed meanwhile)
            page.get_by_role("heading", name="Review queue").click()
            page.wait_for_timeout(1000)
            for i in range(next_rows):
                # the previous rerun has finished: its shortcuts are live
                expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
                t0 = time.perf_counter()
                page.keyboard.press("s")
                expect(page.get_by_text(f"#{i + 2} · id")).to_be_visible(timeout=60_000)
                out["next_row_ms"].append((time.perf_counter() - t0) * 1000)
            browser.close()
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def server_cpu(root: Path, next_rows: int) -> dict:
    """CPU seconds of the app's script runs (streamlit.testing, in this process): what the server
    spends per page, less sensitive to a shared machine's load than wall time."""
    from streamlit.testing.v1 import AppTest

    os.environ["SENTILOOP_ROOT"] = str(root)
    at = AppTest.from_file(str(ROOT / "src/sentiloop/app/streamlit_app.py"), default_timeout=300)
    out = {}
    for name in ("overview_cold_cpu_s", "overview_warm_cpu_s"):
        c0 = time.process_time()
        at.run()
        out[name] = round(time.process_time() - c0, 3)
    at.sidebar.radio(key="page").set_value("Review queue").run()
    at.sidebar.text_input(key="reviewer").set_value("bench-cpu").run()
    cpu = []
    for _ in range(next_rows):
        c0 = time.process_time()
        at.button(key="btn_skip_None").click().run()
        cpu.append(time.process_time() - c0)
    out["next_row_cpu_ms_median"] = round(1000 * statistics.median(cpu))
    out["next_row_cpu_ms_max"] = round(1000 * max(cpu))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=712_383)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--next-rows", type=int, default=20, help="queue rows skipped with the keyboard, timed")
    ap.add_argument("--loads", type=int, default=3, help="Overview page loads, timed (the first is cold)")
    ap.add_argument("--work", default="bench/out/app_speed", help="work directory (replaced)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    s, L = synthetic_run(work, args.rows, args.iterations, args.seed)
    t_make = time.perf_counter() - t0
    # the stage as DVC runs it: its own process (wall time with interpreter start, peak RSS)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", STAGE],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    t_stage = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"review_data failed: {res.stderr[-2000:]}")
    stage = json.loads(res.stdout.strip().splitlines()[-1])
    ov = json.loads(L.review_overview.read_text())
    result = {
        "rows": args.rows,
        "synthetic_run_s": round(t_make, 1),
        "review_data_s": round(t_stage, 1),
        "review_data_cpu_s": stage["cpu_s"],
        "review_data_peak_rss_mib": stage["peak_rss_mib"],
        "queue_rows": ov["queue"]["rows"],
        "summary_bytes": {p.name: p.stat().st_size for p in sorted(L.review_dir.iterdir())},
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "python": platform.python_version(),
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        try:
            import playwright  # noqa: F401

            fig = browser_figures(work, args.next_rows, args.loads)
            nr = sorted(fig["next_row_ms"])
            result.update(
                first_paint_s=[round(x, 2) for x in fig["first_paint_s"]],
                complete_s=[round(x, 2) for x in fig["complete_s"]],
                next_row_ms_median=round(statistics.median(nr)) if nr else None,
                next_row_ms_p90=round(nr[int(0.9 * (len(nr) - 1))]) if nr else None,
                next_row_ms_max=round(nr[-1]) if nr else None,
            )
        except ImportError:
            result["browser"] = "playwright not installed"
    else:
        result["browser"] = "no chromium"
    try:
        result.update(server_cpu(work, args.next_rows))
    except ImportError:
        result["server_cpu"] = "streamlit not installed"
    result["load_after"] = os.getloadavg()
    (work / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
