"""What the review app's pages compute, apart from Streamlit (tested without a browser).

The pages read the precomputed summaries of stage review_data (data/review/), the feedback
directory and, for the Experiments page, git and DVC; the store is read only by primary key or
an explicit text search (Row lookup), never on every rerun.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from sentiloop.errors import SentiloopError
from sentiloop.layout import Layout

PLOTS_DIR = "metrics/live/plots/metrics"
DEFAULT_CURVES = (
    "label_change_rate",
    "ensemble/dev_macro_f1",
    "corrections/ensemble",
    "corrections/llm",
    "corrections/human",
    "gold/label_accuracy",
)
WORKSPACE = "workspace"


class AppError(SentiloopError, RuntimeError):
    """Something the app cannot show; the message says what to run."""


@dataclass(frozen=True)
class AppConfig:
    root: Path
    classes: list[str]
    feedback_dir: Path
    members: list[str]


def load_config(root: str | Path, params: str = "params.yaml", feedback_root: str | Path | None = None) -> AppConfig:
    """The app's settings from `root`'s params.yaml; decisions go to feedback.dir under
    `feedback_root` (the repository, also when `root` holds another revision's outputs)."""
    from sentiloop.settings import load

    root = Path(root)
    path = root / params
    if not path.exists():
        raise AppError(f"{path}: not found; start the app in a sentiloop repository (or pass --root)")
    s = load(path)
    return AppConfig(
        root=root,
        classes=s.classes,
        feedback_dir=Layout(Path(feedback_root or root)).feedback(s.feedback.dir),
        members=s.members,
    )


# --- another revision's outputs --------------------------------------------------------------------
REV_OUTPUTS = (
    "data/review/overview.json",
    "data/review/iterations.json",
    "data/review/queue.parquet",
    "data/review/applied.parquet",
    "data/final/sentences.sqlite",
    "data/final/predictions.parquet",
)


def materialize_rev(repo: str | Path, rev: str, dest_base: str | Path | None = None) -> Path:
    """The outputs of a git revision or `dvc exp` (its commit) in a directory the app can serve:
    params.yaml and metrics/ from git, the review summaries and the final store from the DVC
    cache (nothing is checked out in the repository)."""
    import tarfile

    import dvc.api

    repo = Path(repo).resolve()
    try:
        sha = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    except AppError:
        exps = experiments(repo)
        match = [c for name, c in exps.items() if name == rev or name.split(" (")[0] == rev]
        if not match:
            raise AppError(f"--rev {rev}: no such git revision or DVC experiment in {repo}") from None
        sha = match[0]
    dest = Path(dest_base or repo / ".sentiloop" / "app") / sha[:12]
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", sha, "params.yaml", "metrics"], capture_output=True)
    if archive.returncode != 0:
        raise AppError(f"--rev {rev}: git archive failed: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.10.12: git's own archive
            tar.extractall(dest)
    for rel in REV_OUTPUTS:
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with dvc.api.open(rel, repo=str(repo), rev=sha, mode="rb") as src, open(out, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        except Exception as e:  # dvc raises many types: not tracked, not in the cache, ...
            raise AppError(
                f"--rev {rev}: {rel} is not available from the DVC cache ({type(e).__name__}); "
                f"`dvc pull` it, or `dvc exp apply {rev}` and `dvc repro review_data`"
            ) from None
    (dest / ".complete").write_text(sha + "\n")
    return dest


# --- review queue --------------------------------------------------------------------------------
def filter_queue(
    queue: pd.DataFrame,
    *,
    classes: Sequence[str] = (),
    sources: Sequence[str] = (),
    iterations: Sequence[int] = (),
    text: str = "",
    exclude: Iterable[str] = (),
) -> pd.DataFrame:
    """The queue rows matching every filter given (empty filters match all), in rank order."""
    mask = pd.Series(True, index=queue.index)
    if classes:
        mask &= queue["current_label"].isin(list(classes))
    if sources:
        mask &= queue["source"].isin(list(sources))
    if iterations:
        mask &= queue["last_iteration"].isin([int(i) for i in iterations])
    if text:
        mask &= queue["text"].str.contains(text, case=False, regex=False, na=False)
    exclude = set(map(str, exclude))
    if exclude:
        mask &= ~queue["id"].astype(str).isin(exclude)
    return queue[mask]


def probability_table(row: pd.Series | dict, members: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """One line per member (and the ensemble), one column per class."""
    out = {}
    for name in [*members, "ens"]:
        cols = [f"p_{name}_{c}" for c in classes]
        if all(c in row and row[c] is not None for c in cols):
            out["ensemble" if name == "ens" else name] = [round(float(row[c]), 4) for c in cols]
    return pd.DataFrame.from_dict(out, orient="index", columns=list(classes))


def history_table(history_json: str | None) -> pd.DataFrame:
    cols = ["iteration", "old_label", "new_label", "source", "confidence", "detail"]
    try:
        rows = json.loads(history_json) if history_json else []
    except ValueError:
        rows = []
    if any("action" in r for r in rows):
        cols.append("action")
    return pd.DataFrame(rows, columns=cols)


def feedback_status(cfg: AppConfig, applied: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(pending, applied, rejects) over every feedback file: pending are accepted decisions the
    last run has not applied yet (a new id, or a different label); rejects say why a row or a
    file would be refused by the correct stage."""
    from sentiloop.feedback import load_feedback

    store = Layout(cfg.root).final_store
    if not store.exists():
        raise AppError("no run yet: run `make run` (or `dvc repro`), then reload")
    import sqlite3

    try:
        acc, rej = load_feedback(cfg.feedback_dir, cfg.classes, store)
    except sqlite3.DatabaseError as e:
        raise AppError(f"{store}: unreadable ({e}); restore it with `dvc checkout` or rerun `dvc repro`") from None
    done = set(zip(applied["id"].astype(str), applied["label"].astype(str))) if len(applied) else set()
    pending = acc[[(str(i), str(l)) not in done for i, l in zip(acc["id"], acc["label"])]] if len(acc) else acc
    return pending.reset_index(drop=True), applied, rej


def decided_elsewhere(cfg: AppConfig, own_file: Path | None) -> set[str]:
    """Ids with a decision in any other reviewer's file (accepted or skipped): hidden from this
    reviewer's queue so two reviewers do not review the same row twice."""
    from sentiloop.feedback import feedback_files

    ids: set[str] = set()
    for path in feedback_files(cfg.feedback_dir):
        if own_file is not None and path.resolve() == Path(own_file).resolve():
            continue
        if path.suffix.lower() not in (".csv", ".tsv"):
            continue
        try:
            frame = pd.read_csv(
                path,
                sep="\t" if path.suffix.lower() == ".tsv" else ",",
                dtype=str,
                keep_default_na=False,
                usecols=lambda c: c.strip() == "id",
            )
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError):
            continue  # reported by feedback_status's rejects
        if "id" in frame.columns:
            ids |= set(frame["id"].str.strip())
    return ids - {""}


# --- experiments ----------------------------------------------------------------------------------
def exp_show(root: Path, timeout: float = 120.0) -> pd.DataFrame:
    """`dvc exp show --csv`: params and summary metrics of the workspace, HEAD and its experiments."""
    import shutil
    import sys

    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    try:
        res = subprocess.run(
            [dvc, "exp", "show", "--csv", "--no-pager"], cwd=root, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AppError(f"`dvc exp show` failed to run ({type(e).__name__}); is dvc installed?") from None
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise AppError(f"`dvc exp show` failed: {last}")
    return parse_exp_csv(res.stdout)


def parse_exp_csv(text: str) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    keep = [
        c
        for c in frame.columns
        if c in ("Experiment", "rev", "Created", "State")
        or c.split(":")[-1]
        in (
            "schedule.name",
            "schedule.start",
            "schedule.end",
            "loop.max_iterations",
            "ensemble.members",
            "termination_reason",
            "converged_at",
            "final_label_change_rate",
            "labels_changed_total",
            "test_macro_f1",
            "dev_macro_f1",
            "test_accuracy",
        )
        or c
        in (
            "schedule.name",
            "termination_reason",
            "converged_at",
            "test_macro_f1",
            "labels_changed_total",
            "final_label_change_rate",
        )
    ]
    return frame[keep] if keep else frame


def _git(root: Path, *args: str) -> str:
    res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise AppError(f"git {' '.join(args)}: {res.stderr.strip() or 'failed'}")
    return res.stdout


def experiments(root: Path) -> dict[str, str]:
    """{name: commit} of the repository's DVC experiments (empty outside git)."""
    from sentiloop.report import experiment_revs

    try:
        return experiment_revs(root)
    except RuntimeError:
        return {}


def _tsv_series(text: str) -> dict[int, float]:
    frame = pd.read_csv(io.StringIO(text), sep="\t")
    if "step" not in frame.columns or len(frame.columns) < 2:
        return {}
    value = [c for c in frame.columns if c != "step"][0]
    return {int(s): float(v) for s, v in zip(frame["step"], frame[value])}


def curves(root: Path, rev: str | None) -> dict[str, dict[int, float]]:
    """Every dvclive series (metrics/live/plots/metrics/<name>.tsv) of the workspace (rev None)
    or of a commit: the series `dvc plots diff` draws."""
    out: dict[str, dict[int, float]] = {}
    if rev is None:
        base = Path(root) / PLOTS_DIR
        for p in sorted(base.rglob("*.tsv")) if base.exists() else []:
            out[p.relative_to(base).with_suffix("").as_posix()] = _tsv_series(p.read_text())
        return out
    listing = _git(root, "ls-tree", "-r", "--name-only", rev, "--", PLOTS_DIR)
    for path in listing.split():
        if path.endswith(".tsv"):
            name = path[len(PLOTS_DIR) + 1 : -4]
            out[name] = _tsv_series(_git(root, "show", f"{rev}:{path}"))
    return out


def overlay(series_by_run: dict[str, dict[str, dict[int, float]]], metric: str) -> pd.DataFrame:
    """One column per run, iteration on the index, for one metric."""
    cols = {run: pd.Series(s.get(metric, {}), dtype=float) for run, s in series_by_run.items() if s.get(metric)}
    if not cols:
        return pd.DataFrame()
    frame = pd.DataFrame(cols)
    frame.index.name = "iteration"
    return frame.sort_index()


def registered_versions(root: Path, artifact: str = "sentiment-bundle") -> list[str]:
    """The bundle's GTO version tags (newest last); empty outside git."""
    try:
        tags = _git(root, "tag", "--list", f"{artifact}@*", "--sort=creatordate").split()
    except AppError:
        return []
    return [t.split("@", 1)[1] for t in tags]
