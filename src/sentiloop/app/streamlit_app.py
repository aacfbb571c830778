"""The sentiloop review app (Streamlit): Overview, Review queue, Experiments, Row lookup.

Started by `sentiloop app` / `make app` (127.0.0.1); SENTILOOP_ROOT names the repository whose
outputs it shows (default: the working directory). Pages read stage review_data's summaries
(data/review/); decisions go to one feedback file per reviewer session (sentiloop.review_session).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from sentiloop.app import logic
from sentiloop.errors import SentiloopError, one_line
from sentiloop.layout import Layout
from sentiloop.review_data import load_applied, load_iterations, load_overview, load_queue, row_details, search_text
from sentiloop.review_session import ReviewSession, check_reviewer

PAGES = ("Overview", "Review queue", "Experiments", "Row lookup")


def _root() -> Path:
    return Path(os.environ.get("SENTILOOP_ROOT") or ".").resolve()


def _feedback_root() -> Path | None:
    """The repository whose data/feedback receives decisions, when SENTILOOP_ROOT holds another
    revision's outputs (sentiloop app --rev)."""
    value = os.environ.get("SENTILOOP_FEEDBACK_ROOT")
    return Path(value).resolve() if value else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


@st.cache_data(show_spinner=False, max_entries=4)
def _overview(root: str, stamp) -> dict:
    return load_overview(Layout(Path(root)))


# the queue and the applied labels are read-only frames: shared across sessions without a copy
@st.cache_resource(show_spinner=False, max_entries=4)
def _queue(root: str, stamp) -> pd.DataFrame:
    return load_queue(Layout(Path(root)))


@st.cache_resource(show_spinner=False, max_entries=4)
def _applied(root: str, stamp) -> pd.DataFrame:
    return load_applied(Layout(Path(root)))


@st.cache_resource(show_spinner=False, max_entries=4)
def _config(root: str, feedback_root: str | None, stamp) -> logic.AppConfig:
    """params.yaml validated once per change (validation costs ~0.3 s: not on every rerun)."""
    return logic.load_config(Path(root), feedback_root=feedback_root)


@st.cache_data(show_spinner=False, ttl=60)
def _versions(root: str) -> list[str]:
    return logic.registered_versions(Path(root))


@st.cache_data(show_spinner=False, max_entries=4)
def _iterations(root: str, stamp) -> list[dict]:
    return load_iterations(Layout(Path(root)))


@st.cache_data(show_spinner=False, ttl=300)
def _exp_table(root: str) -> pd.DataFrame:
    return logic.exp_show(Path(root))


@st.cache_data(show_spinner=False, ttl=300)
def _curves(root: str, rev: str | None) -> dict:
    return logic.curves(Path(root), rev)


def _stamp(L: Layout) -> tuple:
    return tuple(_mtime(p) for p in (L.review_overview, L.review_queue, L.review_applied, L.review_iterations))


def _iteration_order(name: str) -> int:
    """original, it1, it2, ... it10 (json sorts it10 before it2)."""
    return int(name[2:]) if name.startswith("it") and name[2:].isdigit() else -1


def _error(e: BaseException) -> None:
    st.error(one_line(e))


# --- Overview -------------------------------------------------------------------------------------
def page_overview(cfg: logic.AppConfig, L: Layout) -> None:
    st.header("Overview")
    ov = _overview(str(L.root), _stamp(L))
    c = st.columns([1, 2, 1, 1])
    c[0].metric("Rows", f"{ov['rows']:,}")
    c[1].metric("Termination", str(ov.get("termination_reason") or "-"))
    c[2].metric("Converged at", str(ov.get("converged_at") if ov.get("converged_at") is not None else "-"))
    gate = ov.get("gate") or {}
    verdict = "-" if not gate else ("deployable" if gate.get("deployable") else "failed")
    c[3].metric("Gate", verdict, help=f"macro-F1 {gate.get('f1')} vs threshold {gate.get('threshold')}")
    versions = _versions(str(L.root))
    st.caption(
        f"Splits: {', '.join(f'{k} {v:,}' for k, v in sorted(ov['splits'].items()))} · "
        f"registered version: {versions[-1] if versions else 'none'} · "
        f"human labels applied: {ov.get('applied_human', 0)}"
    )
    st.subheader("Label distribution per iteration (train)")
    dist = pd.DataFrame(ov["distribution"]).T.fillna(0).astype(int)
    dist = dist.loc[sorted(dist.index, key=_iteration_order)]
    st.bar_chart(dist, sort=False, x_label="iteration")
    st.dataframe(dist, width="stretch")
    if ov.get("by_month"):
        st.subheader(f"Labels over time ({ov.get('date_column')})")
        st.line_chart(pd.DataFrame(ov["by_month"]).T.fillna(0))
    its = pd.DataFrame(_iterations(str(L.root), _stamp(L)))
    if len(its):
        st.subheader("Per iteration")
        st.dataframe(
            its[["k", "changes", "label_change_rate", "dev_macro_f1", "locked", "passed_through"]],
            hide_index=True,
            width="stretch",
        )
    st.subheader("Corrections by source per iteration")
    corr = pd.DataFrame(ov.get("corrections_by_source") or {}).T.fillna(0)
    corr = corr.loc[sorted(corr.index, key=_iteration_order)] if len(corr) else corr
    if corr.empty or not len(corr.columns):
        st.info("No corrections recorded.")
    else:
        st.bar_chart(corr, sort=False, x_label="iteration")
    st.subheader("Test and dev metrics")
    st.dataframe(pd.DataFrame(ov.get("metrics") or {}).T, width="stretch")
    words = ov.get("lexicon_top_words") or {}
    if words:
        st.subheader("Top words per class (lexicon)")
        cols = st.columns(len(words))
        for col, (cls, ws) in zip(cols, words.items()):
            col.markdown(f"**{cls}**")
            col.dataframe(pd.DataFrame(ws, columns=["word", "score"]), hide_index=True, width="stretch")


# --- Review queue ---------------------------------------------------------------------------------
def _session(cfg: logic.AppConfig) -> ReviewSession | None:
    qp = st.query_params
    name = st.sidebar.text_input(
        "Reviewer",
        value=qp.get("reviewer", ""),
        key="reviewer",
        help="recorded in every decision; one feedback file per session",
    )
    if not name:
        st.info("Enter your reviewer name in the sidebar to start reviewing.")
        return None
    try:
        check_reviewer(name)
        sid = qp.get("session") if qp.get("reviewer") == name else None
        try:
            sess = ReviewSession(cfg.feedback_dir, name, cfg.classes, session_id=sid)
        except SentiloopError as e:
            if sid is None:
                raise
            st.warning(f"{one_line(e)}; started a new session")  # a damaged or edited URL
            sess = ReviewSession(cfg.feedback_dir, name, cfg.classes)
    except SentiloopError as e:
        _error(e)
        return None
    if qp.get("reviewer") != name or qp.get("session") != sess.session_id:
        st.query_params["reviewer"] = name
        st.query_params["session"] = sess.session_id
    return sess


def _decide(sess: ReviewSession, rid: str, action: str, label: str | None) -> None:
    try:
        sess.decide(rid, action, label)
        st.session_state["last_decision"] = f"{action} {rid}" + (f" → {label}" if label else "")
    except SentiloopError as e:
        st.session_state["decision_error"] = one_line(e)


def _buttons(sess: ReviewSession, row: pd.Series, classes: list[str]) -> None:
    specs = [("Accept current", "a", "accept", row["current_label"])]
    specs += [(f"Label {c}", str(i + 1), "choose", c) for i, c in enumerate(classes[:9])]
    specs += [("Skip", "s", "skip", None)]
    cols = st.columns(len(specs))
    for col, (label, key, action, value) in zip(cols, specs):
        col.button(
            f"{label} [{key}]",
            key=f"btn_{action}_{value}",
            on_click=_decide,
            shortcut=key,
            args=(sess, str(row["id"]), action, value),
            width="stretch",
        )


def page_queue(cfg: logic.AppConfig, L: Layout) -> None:
    st.header("Review queue")
    queue = _queue(str(L.root), _stamp(L))
    applied = _applied(str(L.root), _stamp(L))
    sess = _session(cfg)
    with st.sidebar:
        st.subheader("Filters")
        f_cls = st.multiselect("Current label", cfg.classes, key="f_cls")
        f_src = st.multiselect("Source", sorted(queue["source"].dropna().unique()), key="f_src")
        f_it = st.multiselect(
            "Last changed in iteration", sorted(int(i) for i in queue["last_iteration"].unique()), key="f_it"
        )
        f_text = st.text_input("Text contains", key="f_text")
    filters = {"classes": f_cls, "sources": f_src, "iterations": f_it, "text": f_text}
    _queue_row(cfg, queue, applied, sess, filters)


@st.fragment
def _queue_row(
    cfg: logic.AppConfig, queue: pd.DataFrame, applied: pd.DataFrame, sess: ReviewSession | None, filters: dict
) -> None:
    """The current row and its actions: a decision reruns this part of the page only."""
    pending, _, rejects = logic.feedback_status(cfg, applied)
    if len(rejects):
        st.warning(
            f"{len(rejects)} feedback row(s) or file(s) would be rejected by the next run "
            "(nothing from them is applied):"
        )
        st.dataframe(rejects, hide_index=True, width="stretch")
    if st.session_state.get("decision_error"):
        st.error(st.session_state.pop("decision_error"))
    if sess is None:
        return
    done = sess.decided | logic.decided_elsewhere(cfg, sess.path) | set(applied["id"].astype(str))
    rows = logic.filter_queue(queue, exclude=done, **filters)
    shown = sess.path.relative_to(cfg.root) if sess.path.is_relative_to(cfg.root) else sess.path
    st.caption(
        f"Session file: `{shown}` · {len(sess.decisions)} decision(s) this session · {len(rows)} row(s) "
        f"left in this view · {len(pending)} pending for the next run · {len(applied)} applied by the "
        "last run"
    )
    if st.session_state.get("last_decision"):
        st.success(f"Saved: {st.session_state['last_decision']}")
    if rows.empty:
        st.info("Nothing left to review with these filters.")
    else:
        row = rows.iloc[0]
        st.subheader(f"#{int(row['rank'])} · id {row['id']}")
        st.markdown(f"> {row['text']}")
        c = st.columns(4)
        c[0].metric("Original label", row["label"])
        c[1].metric("Current label", row["current_label"])
        c[2].metric("P(current label wrong)", f"{float(row['score']):.3f}")
        c[3].metric("Why queued", row["reason"], help=f"source of the current label: {row['source']}")
        _buttons(sess, row, cfg.classes)
        st.markdown("**Probabilities**")
        st.table(logic.probability_table(row, cfg.members, cfg.classes))  # static: cheap to draw
        if isinstance(row.get("llm_label"), str) and row.get("llm_label"):
            st.markdown(
                f"**LLM answer:** {row['llm_label']} (confidence {row.get('llm_confidence')}) — "
                f"{row.get('llm_rationale') or 'no rationale'}"
            )
        else:
            st.caption("No LLM answer for this row.")
        st.markdown("**Label history**")
        hist = logic.history_table(row.get("history"))
        if hist.empty:
            st.caption("No changes: the label is the original one.")
        else:
            st.table(hist.set_index("iteration"))
    # drawn on request only: an expander would send its tables on every decision
    if st.toggle(f"Show the {len(pending)} decision(s) pending for the next run", key="show_pending"):
        st.dataframe(pending, hide_index=True, width="stretch")
    if st.toggle(f"Show the {len(applied)} human label(s) the last run applied", key="show_applied"):
        st.dataframe(applied, hide_index=True, width="stretch")


# --- Experiments ----------------------------------------------------------------------------------
def page_experiments(cfg: logic.AppConfig, L: Layout) -> None:
    st.header("Experiments")
    try:
        st.dataframe(_exp_table(str(L.root)), hide_index=True, width="stretch")
    except SentiloopError as e:
        _error(e)
    exps = logic.experiments(L.root)
    chosen = st.multiselect("Experiments to overlay", list(exps), default=list(exps)[:4], key="exps")
    runs = {logic.WORKSPACE: _curves(str(L.root), None)}
    for name in chosen:
        try:
            runs[name] = _curves(str(L.root), exps[name])
        except SentiloopError as e:
            _error(e)
    metrics = sorted(set().union(*(r.keys() for r in runs.values())))
    if not metrics:
        st.info("No convergence curves yet: run `dvc repro` (stage summarize writes metrics/live).")
        return
    default = [m for m in logic.DEFAULT_CURVES if m in metrics] or metrics[:2]
    for metric in st.multiselect("Curves", metrics, default=default, key="curves"):
        st.markdown(f"**{metric}**")
        st.line_chart(logic.overlay(runs, metric))


# --- Row lookup -----------------------------------------------------------------------------------
def page_lookup(cfg: logic.AppConfig, L: Layout) -> None:
    st.header("Row lookup")
    if not L.final_store.exists():
        st.error("no run yet: run `make run` (or `dvc repro`), then reload")
        return
    text = st.text_input("Text contains", key="lookup_text")
    if text:
        found = search_text(L, text)
        st.dataframe(found, hide_index=True, width="stretch")
    rid = st.text_input("Row id", key="lookup_id").strip()
    if not rid:
        return
    details = row_details(L, rid)
    if details is None:
        st.warning(f"No row with id {rid!r} in {L.final_store}.")
        return
    st.json(details["row"])
    st.markdown("**Predictions (final models)**")
    st.dataframe(logic.probability_table(details["predictions"], cfg.members, cfg.classes), width="stretch")
    st.markdown("**Label history**")
    st.dataframe(pd.DataFrame(details["history"]), hide_index=True, width="stretch")


def main() -> None:
    st.set_page_config(page_title="sentiloop review", layout="wide")
    root = _root()
    try:
        fb_root = _feedback_root()
        cfg = _config(str(root), str(fb_root) if fb_root else None, _mtime(root / "params.yaml"))
    except SentiloopError as e:
        _error(e)
        return
    L = Layout(root)
    if os.environ.get("SENTILOOP_REV"):
        st.sidebar.caption(f"Outputs of revision `{os.environ['SENTILOOP_REV']}`")
    page = st.sidebar.radio("Page", PAGES, key="page")
    fn = {
        "Overview": page_overview,
        "Review queue": page_queue,
        "Experiments": page_experiments,
        "Row lookup": page_lookup,
    }[page]
    try:
        fn(cfg, L)
    except SentiloopError as e:
        _error(e)


main()
