"""`sentiloop daily` (`make daily`): seed 002's daily cycle, through DVC, once per day.

    1. ingest today's batch: every file in data/incoming/ (any format ingest reads) is checked with
       ingest's reader; a file that fails is moved to data/incoming/rejected/ with a
       `<file>.reason.txt` and does not block the others; the rows of the good ones are appended
       to the corpus (data.path, a CSV/TSV; `dvc add`-ed again when DVC tracks it), and the files
       move to data/incoming/done/<date>/;
    2. evaluate the deployed bundle (registry stage `prod`) on today's labelled rows and on the
       held-out test split of the last run (data/final/sentences.sqlite), macro-F1 against
       gate.f1_threshold;
    3. if there is no `prod` yet, or either score is below the bar: `dvc repro`, whose gate stage
       retrains up to gate.max_attempts times and chooses among the attempts on dev, never on test;
    4. a run that passes its gate AND scores at least what `prod` scores on the same (new) test
       split is committed, pushed to the DVC remote when one is configured, registered and
       promoted to `prod` (GTO). Otherwise the day fails: one alert (metrics/alerts.jsonl and
       $SENTILOOP_ALERT_WEBHOOK), the corpus and the run's outputs go back to the last commit
       (the batch waits in data/incoming/failed/<date>/ for a human), `prod` stays, exit code 1;
    5. the day's report: metrics/daily/<date>.md and .json, committed.

Idempotent per day: metrics/daily/<date>.json records each phase as it completes; a second run
the same day is a no-op that says so (and exits as the first did), and an interrupted one resumes
after its last completed phase (`dvc repro` itself skips finished stages), so it never promotes
or alerts twice. The pipeline's own gate stage runs without the webhook here: the day sends one
alert, not two.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sentiloop.errors import SentiloopError
from sentiloop.layout import Layout

INCOMING = Path("data/incoming")
DAILY = Path("metrics/daily")
BACKUP = Path(".sentiloop/daily")  # git-ignored: the corpus as it was before today's batch
PHASES = ("ingested", "evaluated", "retrained", "alerted", "reverted", "promoted")


class DailyError(SentiloopError, RuntimeError):
    pass


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def _run(cmd: Sequence[str], repo: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(cmd), cwd=repo, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        last = (res.stderr.strip() or res.stdout.strip() or "failed").splitlines()[-1]
        raise DailyError(f"`{' '.join(cmd)}` failed (exit {res.returncode}): {last}")
    return res


# --- 1. today's batch ------------------------------------------------------------------------


def _corpus_header(path: Path, delimiter: str) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return next(csv.reader(fh, delimiter=delimiter))


def read_batch(path: Path, data) -> list[dict[str, Any]]:
    """The rows of one incoming file as {column: value}, read by ingest's own reader; raises
    IngestError/DailyError (the file's reason) when ingest could not read it."""
    from sentiloop.ingest import detect_format, read_source

    cfg = data.model_copy(update={"format": "auto"})
    detect_format(path, "auto")
    rows = []
    for raw in read_source(cfg, path, 10_000):
        if "__raw__" in raw.fields:
            raise DailyError(f"row {raw.source_row} is malformed (wrong number of fields)")
        rows.append(raw.fields)
    if not rows:
        raise DailyError("no rows")
    return rows


def ingest_batch(repo: Path, s, date: str, incoming: Path = INCOMING) -> dict[str, Any]:
    """Append the good incoming files' rows to the corpus; quarantine the others (with a reason)."""
    corpus = repo / s.data.path
    fmt = corpus.suffix.lower().removesuffix(".gz")
    if fmt not in (".csv", ".tsv", ".txt") or corpus.name.endswith(".gz"):
        raise DailyError(
            f"data.path = {s.data.path}: the daily job appends to a plain CSV/TSV corpus; "
            "convert it (or point data.path at one) first"
        )
    if not corpus.exists():
        raise DailyError(f"data.path = {s.data.path}: no such file")
    delimiter = "," if fmt == ".csv" else "\t"
    header = _corpus_header(corpus, delimiter)
    inbox = repo / incoming
    files = sorted(p for p in inbox.glob("*") if p.is_file() and not p.name.startswith(".")) if inbox.exists() else []
    out: dict[str, Any] = {"files": [], "rejected_files": [], "rows": 0, "texts": [], "labels": []}
    backup = repo / BACKUP / date / corpus.name
    if files and not backup.exists():
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(corpus, backup)
    appended: list[list[str]] = []
    for f in files:
        try:
            rows = read_batch(f, s.data)
        except (SentiloopError, OSError, ValueError, UnicodeDecodeError) as e:
            rejected = inbox / "rejected"
            rejected.mkdir(parents=True, exist_ok=True)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            shutil.move(str(f), rejected / f.name)
            (rejected / f"{f.name}.reason.txt").write_text(f"{date}: {reason}\n", encoding="utf-8")
            out["rejected_files"].append({"file": f.name, "reason": reason})
            continue
        for r in rows:
            appended.append(["" if r.get(c) is None else str(r.get(c)) for c in header])
            out["texts"].append("" if r.get(s.data.text_column) is None else str(r[s.data.text_column]).strip())
            out["labels"].append(s.data.label_map.get(str(r.get(s.data.label_column)).strip()))
        done = inbox / "done" / date
        done.mkdir(parents=True, exist_ok=True)
        shutil.move(str(f), done / f.name)
        out["files"].append({"file": f.name, "rows": len(rows)})
    if appended:
        with open(corpus, "rb+") as fh:  # a last line without a newline gets one first
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) not in (b"\n", b"\r"):
                    fh.write(b"\n")
        with open(corpus, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh, delimiter=delimiter, lineterminator="\n").writerows(appended)
        if (repo / f"{s.data.path}.dvc").exists():
            _run([_tool("dvc"), "add", s.data.path], repo)
    out["rows"] = len(appended)
    return out


# --- 2. the deployed bundle's scores ---------------------------------------------------------


def score(bundle, texts: Sequence[str], labels: Sequence[str | None]) -> float | None:
    """Macro-F1 of a bundle on labelled texts (rows without a known label are left out)."""
    from sentiloop.evaluation import macro_f1

    keep = [(t, bundle.classes.index(y)) for t, y in zip(texts, labels) if t and y in bundle.classes]
    if not keep:
        return None
    pred = bundle.predict_proba([t for t, _ in keep]).argmax(axis=1)
    return macro_f1(np.array([y for _, y in keep]), pred, len(bundle.classes))


def test_rows(repo: Path, classes: Sequence[str]) -> tuple[list[str], list[str]]:
    """The held-out test split of the run in the workspace (data/final/sentences.sqlite)."""
    from sentiloop.store import iter_chunks

    db = Layout(repo).final_store
    if not db.exists():
        return [], []
    texts, labels = [], []
    for frame in iter_chunks(db, ("text", "current_label"), where="split = 'test'"):
        texts += frame["text"].astype(str).tolist()
        labels += frame["current_label"].astype(str).tolist()
    return texts, labels


def prod_bundle(repo: Path):
    from sentiloop import registry
    from sentiloop.bundle import Bundle

    version = registry.stage_version(repo, "prod")
    if version is None:
        return None, None
    return version, Bundle.load(registry.resolve_bundle(repo, "prod"))


# --- the day's record ------------------------------------------------------------------------


class Day:
    def __init__(self, repo: Path, date: str):
        self.repo, self.date = repo, date
        self.json_path = repo / DAILY / f"{date}.json"
        self.md_path = repo / DAILY / f"{date}.md"
        self.rec: dict[str, Any] = (
            json.loads(self.json_path.read_text())
            if self.json_path.exists()
            else {"date": date, "status": "running", "phases": {}}
        )

    def done(self, phase: str) -> bool:
        return phase in self.rec["phases"]

    def mark(self, phase: str, info: Any) -> None:
        self.rec["phases"][phase] = info
        self.save()

    def save(self) -> None:
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.rec, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(self.json_path)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def write_day_report(day: Day) -> None:
    r, p = day.rec, day.rec["phases"]
    ing, ev, rt = p.get("ingested") or {}, p.get("evaluated") or {}, p.get("retrained") or {}
    md = [
        f"# Daily run {r['date']}: {r['status'].upper()}",
        "",
        r.get("message", ""),
        "",
        "## Batch",
        "",
        f"{ing.get('rows', 0)} row(s) from {len(ing.get('files', []))} file(s) appended to the corpus; "
        f"{len(ing.get('rejected_files', []))} file(s) rejected.",
    ]
    md += [f"- rejected `{x['file']}`: {x['reason']}" for x in ing.get("rejected_files", [])]
    md += ["", "## Deployed model (prod)", ""]
    if ev.get("prod_version"):
        md += [
            f"`prod` = {ev['prod_version']}: today's rows macro-F1 {_fmt(ev.get('batch_f1'))}, "
            f"test split macro-F1 {_fmt(ev.get('test_f1'))}, threshold {ev.get('threshold')}."
        ]
    else:
        md += ["No version holds `prod` yet."]
    md += ["", "## Retraining", ""]
    if rt:
        retries = (
            f"after {rt['attempts']} retraining attempt(s), chosen on dev"
            if rt.get("attempts")
            else "with the loop's own models"
        )
        md += [
            f"`dvc repro`: gate {'passed' if rt.get('gate_passed') else 'failed'}, test macro-F1 "
            f"{_fmt(rt.get('f1'))} {retries}; `prod` on the same test split "
            f"{_fmt(rt.get('prod_f1_same_test'))}."
        ]
    else:
        md += [f"Not retrained: {ev.get('why_not_retrained', 'the deployed model clears the bar')}."]
    if p.get("promoted"):
        md += ["", f"Promoted {p['promoted'].get('version')} to `prod`."]
    if p.get("alerted"):
        md += ["", f"Alert sent: {p['alerted'].get('message')}"]
    day.md_path.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")


# --- the cycle -------------------------------------------------------------------------------


def _git_commit(repo: Path, message: str, paths: Sequence[str]) -> bool:
    """Commit these paths, plus the .gitignore / .dvc files DVC staged itself (core.autostage),
    and nothing else: never the incoming batches, never what a user had staged."""
    _run(["git", "add", "--", *paths], repo)
    staged = _run(["git", "diff", "--cached", "--name-only"], repo).stdout.split()
    ours = [
        p
        for p in staged
        if p in paths
        or any(p.startswith(f"{d.rstrip('/')}/") for d in paths)
        or p.endswith(".gitignore")
        or p.endswith(".dvc")
    ]
    if not ours:
        return False
    _run(["git", "commit", "-q", "-m", message, "--", *ours], repo)
    return True


def _default_remote(repo: Path) -> str | None:
    res = _run([_tool("dvc"), "remote", "default"], repo, check=False)
    name = res.stdout.strip()
    return name if res.returncode == 0 and name and "No default remote" not in name else None


def run_daily(
    repo: str | Path = ".",
    date: str | None = None,
    *,
    incoming: Path = INCOMING,
    repro: Callable[[Path], None] | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """One day's cycle; returns the exit code (0 passed or nothing to do, 1 failed and alerted)."""
    from sentiloop import gate as gate_mod
    from sentiloop import registry
    from sentiloop.settings import load

    repo = Path(repo).resolve()
    date = date or dt.date.today().isoformat()
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise DailyError(f"--date {date!r}: expected YYYY-MM-DD") from None
    day = Day(repo, date)
    if day.rec["status"] != "running":
        log(f"daily {date}: already ran ({day.rec['status']}: {day.rec.get('message', '')}); nothing to do")
        return int(day.rec.get("exit_code", 0))
    if day.rec["phases"]:
        log(f"daily {date}: resuming after {', '.join(x for x in PHASES if x in day.rec['phases'])}")
    s = load(repo / "params.yaml")
    threshold = s.gate.f1_threshold

    batch_file = repo / BACKUP / date / "batch.json"  # today's labelled rows: local, not committed
    if not day.done("ingested"):
        ing = ingest_batch(repo, s, date, incoming)
        batch_file.parent.mkdir(parents=True, exist_ok=True)
        batch_file.write_text(json.dumps({"texts": ing["texts"], "labels": ing["labels"]}))
        day.mark("ingested", {k: v for k, v in ing.items() if k not in ("texts", "labels")})
        log(
            f"daily {date}: {ing['rows']} new row(s) from {len(ing['files'])} file(s), "
            f"{len(ing['rejected_files'])} file(s) rejected"
        )
    batch = json.loads(batch_file.read_text()) if batch_file.exists() else {"texts": [], "labels": []}

    if not day.done("evaluated"):
        version, bundle = prod_bundle(repo)
        ev: dict[str, Any] = {"prod_version": version, "threshold": threshold}
        if bundle is None:
            ev["retrain"], ev["why"] = True, "no version holds prod yet"
        else:
            ev["batch_f1"] = score(bundle, batch["texts"], batch["labels"])
            ev["test_f1"] = score(bundle, *test_rows(repo, bundle.classes))
            low = [name for name in ("batch_f1", "test_f1") if ev[name] is not None and ev[name] < threshold]
            ev["retrain"] = bool(low)
            ev["why"] = (
                (
                    f"prod {version} below {threshold} on "
                    + " and ".join("today's rows" if n == "batch_f1" else "the test split" for n in low)
                )
                if low
                else None
            )
            if not low:
                ev["why_not_retrained"] = f"prod {version} clears {threshold} on today's rows and the test split"
        day.mark("evaluated", ev)
        log(f"daily {date}: " + (ev["why"] or ev.get("why_not_retrained", "")))
    ev = day.rec["phases"]["evaluated"]

    ok, message = True, ev.get("why_not_retrained") or ""
    if ev["retrain"]:
        if not day.done("retrained"):
            (repro or _dvc_repro)(repo)
            g = json.loads(Layout(repo).gate_json.read_text())
            rt = {
                "gate_passed": bool(g.get("passed")),
                "f1": g.get("f1"),
                "dev_f1": g.get("dev_f1"),
                "attempts": g.get("attempts", 0),
                "selected_attempt": g.get("selected_attempt", 0),
            }
            if ev.get("prod_version"):
                _, bundle = prod_bundle(repo)
                rt["prod_f1_same_test"] = score(bundle, *test_rows(repo, bundle.classes))
            day.mark("retrained", rt)
        rt = day.rec["phases"]["retrained"]
        prod_f1 = rt.get("prod_f1_same_test")
        if not rt["gate_passed"]:
            ok, message = (
                False,
                (
                    f"retrained ensemble's test macro-F1 {_fmt(rt['f1'])} is below {threshold} "
                    f"after {rt['attempts']} attempt(s); prod stays {ev.get('prod_version') or 'unset'}"
                ),
            )
        elif prod_f1 is not None and rt["f1"] < prod_f1:
            ok, message = (
                False,
                (
                    f"retrained ensemble's test macro-F1 {_fmt(rt['f1'])} is below prod "
                    f"{ev['prod_version']}'s {_fmt(prod_f1)} on the same test split; prod stays"
                ),
            )
        else:
            message = f"retrained ensemble passes: test macro-F1 {_fmt(rt['f1'])} >= {threshold}"

    if not ok:
        if not day.done("alerted"):
            alert = {
                "alert_type": "DAILY_JOB_FAILURE",
                "severity": "critical",
                "date": date,
                "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "message": message,
                "prod": ev.get("prod_version"),
                "run": gate_mod.run_info(),
            }
            url = os.environ.get(gate_mod.WEBHOOK_ENV, "")
            webhook = gate_mod.post_webhook(url, alert, s.gate.webhook_timeout) if url else {"sent": False}
            day.mark("alerted", {"message": message, "webhook": webhook})
            pending_alert = alert
        else:
            pending_alert = None
        if not day.done("reverted"):
            _revert(repo, s, date, incoming)
            day.mark("reverted", True)
        if pending_alert is not None or not _alert_logged(repo, date):
            gate_mod.append_alert(
                Layout(repo).alerts,
                pending_alert or {"alert_type": "DAILY_JOB_FAILURE", "date": date, "message": message},
            )
    day.rec.update(status="passed" if ok else "failed", message=message, exit_code=0 if ok else 1)
    day.save()
    write_day_report(day)
    outputs = [str(DAILY), str(Layout().alerts)]
    if ok:
        corpus_file = f"{s.data.path}.dvc" if (repo / f"{s.data.path}.dvc").exists() else s.data.path
        outputs += ["dvc.lock", "metrics", corpus_file]
    _git_commit(repo, f"daily {date}: {day.rec['status']}: {message}", [p for p in outputs if (repo / p).exists()])
    if ok and ev["retrain"] and not day.done("promoted"):
        if _default_remote(repo):
            _run([_tool("dvc"), "push", "-q"], repo)
        out = registry.promote(repo, "prod", message=f"daily {date}: {message}")
        day.mark("promoted", {"version": out["version"], "changed": out["changed"]})
        write_day_report(day)
        _git_commit(repo, f"daily {date}: promoted {out['version']} to prod", [str(DAILY)])
        log(f"daily {date}: promoted {out['version']} to prod")
    log(f"daily {date}: {day.rec['status']}: {message}")
    return int(day.rec["exit_code"])


def _alert_logged(repo: Path, date: str) -> bool:
    path = Layout(repo).alerts
    if not path.exists():
        return False
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("alert_type") == "DAILY_JOB_FAILURE" and rec.get("date") == date:
            return True
    return False


def _dvc_repro(repo: Path) -> None:
    """`dvc repro` without the webhook: the gate stage logs its alert line, the day POSTs once."""
    env = {k: v for k, v in os.environ.items() if k not in ("SENTILOOP_ALERT_WEBHOOK", "DVCLIVE_TEST")}
    _run([_tool("dvc"), "repro"], repo, env=env)


def _revert(repo: Path, s, date: str, incoming: Path) -> None:
    """Back to the last commit's corpus and outputs; today's batch waits in incoming/failed/<date>/."""
    corpus = repo / s.data.path
    backup = repo / BACKUP / date / corpus.name
    if backup.exists():
        shutil.copy2(backup, corpus)
    keep = {str(DAILY / f"{date}.json"), str(DAILY / f"{date}.md")}

    def ours(p):
        return p not in keep and (
            p in ("dvc.lock", s.data.path, f"{s.data.path}.dvc") or p.startswith("metrics/") or p.endswith(".gitignore")
        )

    # vs HEAD, staged or not (`dvc repro` stages dvc.lock itself: core.autostage); only what the
    # run wrote, never a user's edits
    changed = [p for p in _run(["git", "diff", "--name-only", "HEAD"], repo).stdout.split() if ours(p)]
    added = {p for p in _run(["git", "diff", "--name-only", "--diff-filter=A", "HEAD"], repo).stdout.split() if ours(p)}
    restore = [p for p in changed if p not in added]
    if restore:
        _run(["git", "checkout", "HEAD", "--", *restore], repo)
    for p in added - keep:
        _run(["git", "rm", "-q", "-f", "--cached", "--", p], repo)
        (repo / p).unlink(missing_ok=True)
    res = _run([_tool("dvc"), "checkout", "-f", "-q"], repo, check=False)
    if res.returncode != 0:
        raise DailyError(
            f"`dvc checkout -f` could not restore the last commit's outputs: "
            f"{(res.stderr.strip().splitlines() or ['failed'])[-1]}; rerun `sentiloop daily` after fixing it"
        )
    done = repo / incoming / "done" / date
    if done.exists():
        failed = repo / incoming / "failed" / date
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(done), failed)
