"""The review app's pages, run by streamlit.testing's AppTest (no browser) over a tiny real run."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import app_support as A  # noqa: E402
from sentiloop.feedback import load_feedback  # noqa: E402
from sentiloop.layout import Layout  # noqa: E402

SCRIPT = str(Path(__file__).resolve().parents[1] / "src/sentiloop/app/streamlit_app.py")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("app") / "repo"
    A.make_run(root)
    return root


@pytest.fixture
def root(run_dir, tmp_path):
    """A private copy of the finished run (tests write feedback into it)."""
    dst = tmp_path / "repo"
    shutil.copytree(run_dir, dst)
    return dst


def app(root: Path, monkeypatch, page: str | None = None, **query) -> AppTest:
    monkeypatch.setenv("SENTILOOP_ROOT", str(root))
    at = AppTest.from_file(SCRIPT, default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if page:
        at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, at.exception
    return at


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def queue(root: Path) -> pd.DataFrame:
    return pd.read_parquet(Layout(root).review_queue)


def test_overview_shows_the_run(root, monkeypatch):
    at = app(root, monkeypatch)
    assert errors(at) == []
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == "90" and metrics["Termination"] == "max_iterations"
    assert metrics["Converged at"] == "2" and metrics["Gate"] == "-"
    frames = [d.value for d in at.dataframe]
    dist = frames[0]
    assert list(dist.index) == ["original", "it1", "it2"] and dist.loc["it2"].sum() == 54
    changes = [json.loads(Layout(root).iteration_metrics(k).read_text())["changes"] for k in (1, 2)]
    assert frames[1]["k"].tolist() == [1, 2] and frames[1]["changes"].tolist() == changes
    assert "ensemble" in frames[2].index and frames[2].loc["ensemble", "test_macro_f1"] == pytest.approx(1.0)
    assert any("awful" in set(f.get("word", [])) for f in frames[3:])  # lexicon top words
    assert "train 54" in at.caption[0].value


def test_no_run_yet_says_which_command_to_run(tmp_path, run_dir, monkeypatch):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "params.yaml", bare / "params.yaml")
    for page in (None, "Review queue", "Row lookup"):
        at = app(bare, monkeypatch, page)
        assert any("no run yet: run `make run`" in e for e in errors(at)), (page, errors(at))
    outside = tmp_path / "empty"
    outside.mkdir()
    at = app(outside, monkeypatch)
    assert errors(at) == [
        f"{outside / 'params.yaml'}: not found; start the app in a sentiloop repository (or pass --root)"
    ]


def test_missing_or_corrupt_summaries_name_the_command(root, monkeypatch):
    L = Layout(root)
    assert errors(app(root, monkeypatch)) == [] and errors(app(root, monkeypatch, "Review queue")) == []
    time.sleep(0.01)  # a new mtime: the app's caches are keyed by the files' mtimes
    L.review_overview.write_text("{not json")
    at = app(root, monkeypatch)
    assert errors(at) == [f"{L.review_overview} is corrupt (JSONDecodeError): rerun `dvc repro -f review_data`"]
    L.review_queue.write_bytes(b"PAR1 garbage")
    at = app(root, monkeypatch, "Review queue", reviewer="ann")
    assert len(errors(at)) == 1 and "queue.parquet is corrupt" in errors(at)[0]
    L.final_store.write_bytes(b"not a database" * 100)
    at = app(root, monkeypatch, "Row lookup")
    at.text_input(key="lookup_id").set_value("t1").run()
    (msg,) = errors(at)  # one line naming the file and what to run
    assert msg.startswith(f"{L.final_store}: ") and "not a database" in msg and "dvc" in msg
    shutil.rmtree(L.review_dir)
    at = app(root, monkeypatch)
    assert errors(at) == [f"{L.review_overview} is missing: run `dvc repro review_data` to write the review summaries"]
    assert not list((root / "data/feedback").iterdir())  # nothing written


def _session_file(root: Path) -> Path:
    files = sorted((root / "data/feedback").glob("app-*.csv"))
    assert len(files) == 1, files
    return files[0]


def test_review_queue_records_accept_choose_skip_in_rank_order(root, monkeypatch):
    q = queue(root)
    at = app(root, monkeypatch, "Review queue")
    assert [i.value for i in at.info] == ["Enter your reviewer name in the sidebar to start reviewing."]
    at.sidebar.text_input(key="reviewer").set_value("ann").run()
    assert at.subheader[0].value == f"#1 · id {q.id[0]}"
    labels = [b.label for b in at.button]
    assert labels == ["Accept current [a]", "Label negative [1]", "Label neutral [2]", "Label positive [3]", "Skip [s]"]
    probs = at.table[0].value
    assert list(probs.index) == ["lexicon", "ensemble"] and list(probs.columns) == A.S.CLASSES
    assert probs.loc["ensemble", q.current_label[0]] == pytest.approx(1 - q.score[0], abs=1e-4)
    hist = at.table[1].value  # row 1 was changed by the loop
    assert hist["source"].tolist() == ["ensemble"] and hist["new_label"].tolist() == [q.current_label[0]]
    assert hist.index.tolist() == [1]

    other = next(c for c in A.S.CLASSES if c != q.current_label[1])
    at.button(key=f"btn_accept_{q.current_label[0]}").click().run()
    at.button(key=f"btn_choose_{other}").click().run()
    at.button(key="btn_skip_None").click().run()
    path = _session_file(root)
    assert path.read_text() == (
        f"id,label,reviewer,action\n{q.id[0]},{q.current_label[0]},ann,accept\n"
        f"{q.id[1]},{other},ann,choose\n{q.id[2]},,ann,skip\n"
    )
    assert at.subheader[0].value == f"#4 · id {q.id[3]}"
    assert "2 pending for the next run" in at.caption[0].value
    at.toggle(key="show_pending").set_value(True).run()
    pending = at.dataframe[0].value
    assert sorted(pending["id"]) == sorted([q.id[0], q.id[1]]) and set(pending["reviewer"]) == {"ann"}
    acc, rej = load_feedback(root / "data/feedback", A.S.CLASSES, Layout(root).final_store)
    assert rej.empty and sorted(acc["id"]) == sorted([q.id[0], q.id[1]]) and acc.attrs["unreviewed"] == 1

    # a reload (same URL: reviewer and session in the query) reopens the same file and its decisions
    session = path.name.split("-", 2)[2][:-4]
    again = app(root, monkeypatch, "Review queue", reviewer="ann", session=session)
    assert again.subheader[0].value == f"#4 · id {q.id[3]}" and "3 decision(s) this session" in again.caption[0].value
    again.button(key="btn_skip_None").click().run()
    assert _session_file(root) == path and path.read_text().endswith(f"{q.id[2]},,ann,skip\n{q.id[3]},,ann,skip\n")


def test_two_reviewers_never_overwrite_each_other(root, monkeypatch):
    q = queue(root)
    ann = app(root, monkeypatch, "Review queue", reviewer="ann")
    bo = app(root, monkeypatch, "Review queue", reviewer="bo")
    assert ann.subheader[0].value == bo.subheader[0].value == f"#1 · id {q.id[0]}"
    ann.button(key=f"btn_accept_{q.current_label[0]}").click().run()
    # bo's page still shows row 1 (it has not rerun); bo labels it differently: both are kept
    other = next(c for c in A.S.CLASSES if c != q.current_label[0])
    bo.button(key=f"btn_choose_{other}").click().run()
    files = sorted((root / "data/feedback").glob("app-*.csv"))
    assert [f.name.split("-")[1] for f in files] == ["ann", "bo"]
    assert files[0].read_text() == f"id,label,reviewer,action\n{q.id[0]},{q.current_label[0]},ann,accept\n"
    assert files[1].read_text() == f"id,label,reviewer,action\n{q.id[0]},{other},bo,choose\n"
    # the conflict is shown, and refused by the next run, never silently resolved
    bo.run()
    assert "would be rejected" in bo.warning[0].value
    assert set(bo.dataframe[0].value["reason"].str[:19]) == {"conflicting labels "}
    # a new reviewer's queue hides rows someone already decided
    cy = app(root, monkeypatch, "Review queue", reviewer="cy")
    assert cy.subheader[0].value == f"#2 · id {q.id[1]}"


def test_bad_feedback_files_are_reported_and_nothing_is_written(root, monkeypatch):
    fb = root / "data/feedback"
    (fb / "mine.csv").write_text("id,label\nnope,positive\nt0,happy\n")
    before = sorted(p.name for p in fb.iterdir())
    at = app(root, monkeypatch, "Review queue", reviewer="ann")
    assert at.warning[0].value.startswith("2 feedback row(s) or file(s) would be rejected")
    reasons = at.dataframe[0].value["reason"].tolist()
    assert reasons[0] == "unknown id: not in the store" or "unknown label 'happy'" in " ".join(reasons)
    assert any(r.startswith("unknown label 'happy'") for r in reasons) and "unknown id: not in the store" in reasons
    assert sorted(p.name for p in fb.iterdir()) == before


def test_bad_reviewer_name_is_refused(root, monkeypatch):
    at = app(root, monkeypatch, "Review queue", reviewer="../etc")
    assert errors(at) and errors(at)[0].startswith("reviewer name '../etc': use 1-40 letters")
    assert not list((root / "data/feedback").glob("app-*"))
    # a damaged session id in the URL starts a new session, and says so
    at = app(root, monkeypatch, "Review queue", reviewer="ann", session="../../x")
    assert at.warning[0].value == (
        "session id '../../x' is malformed (expected YYYYMMDDTHHMMSS-xxxxxx, as the "
        "app writes it); started a new session"
    )
    assert at.query_params["session"] != "../../x" and at.subheader[0].value.startswith("#1 · id")


def test_queue_filters(root, monkeypatch):
    q = queue(root)
    at = app(root, monkeypatch, "Review queue", reviewer="ann")
    at.sidebar.multiselect(key="f_cls").set_value(["neutral"]).run()
    first = q[q.current_label == "neutral"].iloc[0]
    assert at.subheader[0].value == f"#{first['rank']} · id {first.id}"
    at.sidebar.multiselect(key="f_cls").set_value([]).run()
    at.sidebar.multiselect(key="f_src").set_value(["ensemble"]).run()
    first = q[q.source == "ensemble"].iloc[0]
    assert at.subheader[0].value == f"#{first['rank']} · id {first.id}"
    word = q.text.iloc[10].split()[0]
    at.sidebar.multiselect(key="f_src").set_value([]).run()
    at.sidebar.text_input(key="f_text").set_value(word.upper()).run()
    first = q[q.text.str.contains(word, case=False, regex=False)].iloc[0]
    assert at.subheader[0].value == f"#{first['rank']} · id {first.id}"
    at.sidebar.text_input(key="f_text").set_value("no such words anywhere").run()
    assert [i.value for i in at.info] == ["Nothing left to review with these filters."]


def test_row_lookup_by_id_and_text(root, monkeypatch):
    q = queue(root)
    changed = q[q.source == "ensemble"].iloc[0]
    at = app(root, monkeypatch, "Row lookup")
    at.text_input(key="lookup_id").set_value(changed.id).run()
    assert at.json[0].value and f'"{changed.id}"' in at.json[0].value
    preds, hist = at.dataframe[0].value, at.dataframe[1].value
    assert list(preds.index) == ["lexicon", "ensemble"]
    assert hist["source"].tolist() == ["ensemble"] and hist["old_label"].tolist() == [changed.label]
    at.text_input(key="lookup_id").set_value("nope").run()
    assert at.warning[0].value.startswith("No row with id 'nope'")
    at.text_input(key="lookup_id").set_value("").run()
    at.text_input(key="lookup_text").set_value("100%_").run()  # LIKE wildcards are literal
    assert at.dataframe[0].value.empty
    word = changed.text.split()[0]
    at.text_input(key="lookup_text").set_value(word).run()
    assert len(at.dataframe[0].value) and at.dataframe[0].value["text"].str.contains(word).all()


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def test_experiments_table_and_overlaid_curves(root, monkeypatch):
    """A git + DVC repository whose metrics/live is committed, and an experiment ref pointing at
    a commit with other curves: the page shows `dvc exp show` and overlays both runs."""
    from sentiloop.settings import load
    from sentiloop.steps import summarize

    s = load(root / "params.yaml")
    summarize.run(s, Layout(root))
    tool = A.S.tool
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "t")
    subprocess.run([tool("dvc"), "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("data/\nmodels/\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "run")
    tsv = root / "metrics/live/plots/metrics/label_change_rate.tsv"
    tsv.write_text("step\tlabel_change_rate\n1\t0.5\n2\t0.25\n")
    _git(root, "commit", "-qam", "exp")
    exp = _git(root, "rev-parse", "HEAD").strip()
    _git(root, "reset", "-q", "--hard", "HEAD~1")
    _git(root, "update-ref", "refs/exps/ab/cdef/my-exp", exp)
    at = app(root, monkeypatch, "Experiments")
    assert errors(at) == []
    table = at.dataframe[0].value
    assert "Experiment" in table.columns and len(table) >= 1
    assert at.multiselect(key="exps").value == ["my-exp (constant)"]
    assert "label_change_rate" in at.multiselect(key="curves").value
    from sentiloop.app import logic

    runs = {"workspace": logic.curves(root, None), "my-exp": logic.curves(root, exp)}
    frame = logic.overlay(runs, "label_change_rate")
    assert frame["my-exp"].tolist() == [0.5, 0.25] and frame.index.tolist() == [1, 2]
    assert frame["workspace"].notna().all()


def test_sentiloop_app_command_serves_on_localhost_and_refuses_a_non_repository(tmp_path, capsys):
    from sentiloop.cli import app_command, main

    cmd = app_command(tmp_path, "127.0.0.1", 8765)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == SCRIPT
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[cmd.index("--server.port") + 1] == "8765"
    assert main(["app", "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sentiloop: error: {tmp_path.resolve() / 'params.yaml'}: not found; "
        "run the app in a sentiloop repository or pass --root"
    )


def test_rev_serves_a_commits_outputs_and_writes_feedback_to_the_repository(root, monkeypatch):
    """`sentiloop app --rev`: params, metrics (git) and the review summaries and final store (DVC
    cache) of a commit, in a directory of their own; decisions still go to the repository."""
    from sentiloop.app.logic import AppError, materialize_rev

    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "t")
    subprocess.run([A.S.tool("dvc"), "init", "-q"], cwd=root, check=True)
    subprocess.run([A.S.tool("dvc"), "add", "-q", "data/review", "data/final"], cwd=root, check=True)
    (root / ".gitignore").write_text("/models/\n/data/it*/\n/data/ingested.sqlite\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "run")
    committed = Layout(root).review_overview.read_text()
    q = queue(root)
    Layout(root).review_overview.write_text("{}")  # the workspace moves on
    with pytest.raises(AppError, match="no such git revision or DVC experiment"):
        materialize_rev(root, "nope")
    shown = materialize_rev(root, "HEAD")
    assert shown.parent == root / ".sentiloop" / "app"
    assert Layout(shown).review_overview.read_text() == committed
    assert (shown / "params.yaml").exists() and Layout(shown).final_store.exists()
    monkeypatch.setenv("SENTILOOP_FEEDBACK_ROOT", str(root))
    at = app(shown, monkeypatch, "Review queue", reviewer="ann")
    at.button(key="btn_skip_None").click().run()
    assert [p.name.startswith("app-ann-") for p in (root / "data/feedback").iterdir()] == [True]
    assert (root / "data/feedback").glob(
        "app-ann-*.csv"
    ).__next__().read_text() == f"id,label,reviewer,action\n{q.id[0]},,ann,skip\n"
    assert not (shown / "data/feedback").exists() or not list((shown / "data/feedback").iterdir())
