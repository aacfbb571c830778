"""The review app in a real browser: `streamlit run` on a free port, driven by Playwright on the
system's headless Chromium. Loads every page, reviews three rows with the keyboard, checks the
feedback file byte for byte, then runs the next correction (correct@it1 onwards, what
`dvc repro` reruns when data/feedback changes) and checks those rows are locked with source
`human` and never changed after.

Chromium comes from the system package manager (`apt-get install -y chromium`; .ci/run installs
it as root); Playwright's own browser download needs the network. Without either the test skips
and says why. SENTILOOP_SCREENSHOTS=docs/img writes the pages' screenshots for docs/review.md.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import app_support as A
from sentiloop.cli import app_command
from sentiloop.layout import Layout

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and Path(p).exists()
    ),
    None,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    pytest.importorskip("streamlit")
    if CHROMIUM is None:
        pytest.skip("no system chromium: run `apt-get install -y chromium` as root (.ci/run does)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    root = tmp_path / "repo"
    prm, L = A.make_run(root)
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        app_command(root, "127.0.0.1", port),
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SENTILOOP_ROOT": str(root)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield url, root, prm, L
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _settled(page) -> None:
    """Wait until Streamlit has finished the rerun (its status widget goes away)."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=30_000)


def _shot(page, name: str) -> None:
    out = os.environ.get("SENTILOOP_SCREENSHOTS")
    if out:
        _settled(page)
        page.wait_for_timeout(500)  # charts draw after the rerun ends
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / f"review_{name}.png"
        page.screenshot(path=str(path))
        from PIL import Image  # 64 colours: a third of the size, same look

        Image.open(path).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _rows(db: Path, ids: list[str]) -> dict[str, tuple[str, int]]:
    con = sqlite3.connect(db)
    marks = ",".join("?" * len(ids))
    out = {
        r[0]: (r[1], r[2])
        for r in con.execute(f"SELECT id, current_label, locked FROM sentences WHERE id IN ({marks})", ids)
    }
    con.close()
    return out


def _history(db: Path, ids: list[str]) -> list[tuple]:
    con = sqlite3.connect(db)
    marks = ",".join("?" * len(ids))
    out = con.execute(
        f"SELECT sentence_id, iteration, new_label, source FROM label_history "
        f"WHERE sentence_id IN ({marks}) ORDER BY rowid",
        ids,
    ).fetchall()
    con.close()
    return out


def test_review_three_rows_by_keyboard_then_the_next_run_locks_them(server):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a shared 2-core machine can be slow
    url, root, prm, L = server
    q = pd.read_parquet(L.review_queue)
    classes = A.S.CLASSES
    # for each of the first three rows, a label that is neither its original nor its current one:
    # the rerun of correct@it1 starts from the original labels, so the lock is a change there
    # (history source `human`) whatever the loop did to the row before
    picks = [next(c for c in classes if c not in (o, cur)) for o, cur in zip(q.label[:3], q.current_label[:3])]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(url)
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.get_by_text("max_iterations").first).to_be_visible()
        expect(page.get_by_role("heading", name="Top words per class (lexicon)")).to_be_visible()
        _shot(page, "overview")
        for name in ("Experiments", "Row lookup"):
            page.get_by_text(name, exact=True).click()
            expect(page.get_by_role("heading", name=name)).to_be_visible()
            if name == "Experiments":  # the tiny run is no DVC repository: said on the page
                expect(
                    page.get_by_text("`dvc exp show` failed").or_(page.get_by_text("dvc exp show")).first
                ).to_be_visible()
        page.get_by_role("textbox", name="Row id").fill(str(q.id[0]))
        page.get_by_role("textbox", name="Row id").press("Enter")
        expect(page.get_by_text("Label history")).to_be_visible()
        _shot(page, "lookup")

        page.get_by_text("Review queue", exact=True).click()
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
        page.get_by_role("textbox", name="Reviewer").fill("ann")
        page.get_by_role("textbox", name="Reviewer").press("Enter")
        expect(page.get_by_text(f"#1 · id {q.id[0]}")).to_be_visible()
        _shot(page, "queue")
        # focus off the text field (its blur can start a rerun that swallows a key pressed meanwhile)
        page.get_by_role("heading", name="Review queue").click()
        page.wait_for_timeout(1000)
        for i, label in enumerate(picks):
            _settled(page)  # the rerun is over: keys are live
            page.keyboard.press(str(classes.index(label) + 1))
            expect(page.get_by_text(f"#{i + 2} · id {q.id[i + 1]}")).to_be_visible()
            expect(page.get_by_text(f"Saved: choose {q.id[i]} → {label}")).to_be_visible()
        expect(page.get_by_text("3 decision(s) this session", exact=False)).to_be_visible()
        # a reload keeps the session (its id is in the URL) and its decisions
        page.reload()
        page.get_by_text("Review queue", exact=True).click()
        expect(page.get_by_text(f"#4 · id {q.id[3]}")).to_be_visible()
        browser.close()

    files = sorted((root / "data/feedback").glob("app-ann-*.csv"))
    assert len(files) == 1
    assert files[0].read_text() == "id,label,reviewer,action\n" + "".join(
        f"{rid},{label},ann,choose\n" for rid, label in zip(q.id[:3], picks)
    )

    # the next run: every correct stage from it1 on reruns with the new feedback
    ids = list(q.id[:3])
    A.rerun_loop_from(prm, L, 1)
    for k in range(1, prm.loop.max_iterations + 1):
        assert _rows(L.store(k), ids) == {rid: (label, 1) for rid, label in zip(ids, picks)}, k
    assert _rows(L.final_store, ids) == {rid: (label, 1) for rid, label in zip(ids, picks)}
    hist = _history(L.final_store, ids)
    human = [h for h in hist if h[3] == "human"]
    assert sorted(human) == sorted((rid, 1, label, "human") for rid, label in zip(ids, picks))
    # nothing after the human label touches those rows
    assert all(h[1] <= 1 for h in hist) and all(h[3] == "human" for h in hist if h[1] == 1)

    # and the app's summaries, rebuilt, show them applied and out of the queue
    from sentiloop.review_data import build

    build(prm, Layout(root))
    applied = pd.read_parquet(L.review_applied)
    assert set(applied["id"]) == set(ids)
    assert not set(pd.read_parquet(L.review_queue)["id"]) & set(ids)
