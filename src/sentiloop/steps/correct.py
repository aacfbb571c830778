"""Stage correct@it<k>: human labels (locked) first, then LLM answers, then ensemble labels above
this iteration's threshold, at most loop.change_cap of the train rows; the convergence check.

Human feedback (reviewed files under feedback.dir) is applied in every iteration, converged or
not, so no later automatic step can change those rows. Once converged, labels pass through."""
from __future__ import annotations

import pandas as pd

from sentiloop import convergence, correction, feedback, store
from sentiloop.analysis.mitigation import apply_class_caps, mitigated_schedule, store_mitigation
from sentiloop.jsonio import read_json, write_json
from sentiloop.layout import Layout
from sentiloop.predictions import train_chunks
from sentiloop.settings import Settings


def run(s: Settings, L: Layout, k: int) -> dict:
    prev_store, predictions, out_store = L.store(k - 1), L.predictions(k), L.store(k)
    n, chunk, classes = s.loop.max_iterations, s.loop.chunk_size, s.classes
    accepted, rejects = feedback.load_feedback(L.feedback(s.feedback.dir), classes, prev_store,
                                               allowed_splits=tuple(s.feedback.splits))
    human = feedback.feedback_stats(accepted, rejects)
    for r in rejects.head(20).itertuples(index=False):
        print(f"feedback rejected: {r.file}:{r.line} id={r.id} label={r.label}: {r.reason}")
    state = convergence.LoopState.from_dict(read_json(L.state(k - 1)))
    ev = read_json(L.eval(k - 1))
    state.dev_f1.append(float(ev["ensemble"]["dev"]["macro_f1"]))
    last = state.history[-1] if state.history else {}
    lex = ev["members"].get("lexicon", {})
    done, reason = convergence.check(state, s.convergence,
                                     last_label_change=last.get("label_change_rate"),
                                     last_dict_change=lex.get("dict_change_rate") if state.history else None)
    state.k = k
    if done and not state.converged:
        state.converged, state.termination_reason, state.converged_at = True, reason, k - 1
    n_train = store.count(prev_store, "split = 'train'")
    if state.converged:
        with store.atomic_db(out_store, copy_from=prev_store) as con:
            human_changes = _apply_human(con, accepted, k)
        record = {"k": k, "passed_through": True, "label_change_rate": 0.0, "changes": 0,
                  "corrections_by_source": {"human": human_changes} if human_changes else {},
                  "thresholds": {}}
    else:
        human_locked = set(accepted["id"]) if len(accepted) else set()
        answers = pd.read_parquet(L.relabel(k))
        answers = answers[answers["status"].notna()] if "status" in answers else answers.iloc[0:0]
        # bias mitigation: drift of the labels so far beyond analysis.max_drift engages
        # class-balanced thresholds and per-class caps (reported in metrics/analysis/itK.md)
        mitigation = store_mitigation(prev_store, classes, s.analysis.max_drift, chunk)
        decision = correction.decide_streaming(
            lambda: train_chunks(prev_store, predictions, ["id", "current_label", "locked"], chunk), classes,
            mitigated_schedule(s.schedule, mitigation), k, n,
            change_cap=s.loop.change_cap, llm_answers=answers, llm_min_confidence=s.llm.min_confidence,
            n_train=n_train, extra_locked=human_locked)
        ch, dropped = decision.changes, 0
        if mitigation["engage"]:
            ch, dropped = apply_class_caps(ch, mitigation["class_caps"])
        with store.atomic_db(out_store, copy_from=prev_store) as con:
            human_changes = _apply_human(con, accepted, k)
            applied = store.apply_label_changes(con, ch)
            if applied != len(ch):
                raise correction.CorrectionError(f"{len(ch)} changes decided but {applied} applied")
            store.write_history(con, ((r.id, k, r.old_label, r.new_label, r.source, float(r.confidence), r.detail)
                                      for r in ch.itertuples(index=False)))
        record = {"k": k, "passed_through": False, "changes": int(len(ch)),
                  "label_change_rate": float(len(ch) / max(n_train, 1)),
                  "corrections_by_source": {**({"human": human_changes} if human_changes else {}),
                                            **{src: int(v) for src, v in ch["source"].value_counts().items()}},
                  "thresholds": decision.thresholds, "capped": decision.capped, "eligible": decision.eligible,
                  "mitigation_engaged": int(bool(mitigation["engage"])), "dropped_by_class_caps": dropped,
                  "max_abs_drift_before": mitigation["max_abs_drift"]}
    correction.assert_test_unchanged(out_store, chunk)
    record["class_distribution"] = store.label_counts(out_store, "current_label", "train")
    record["locked"] = store.count(out_store, "locked = 1")
    record["feedback"] = human
    state.history.append(record)
    write_json(L.state(k), state.to_dict())
    write_json(L.iteration_metrics(k), record)
    return record


def _apply_human(con, accepted, k: int) -> int:
    if not len(accepted):
        return 0
    return feedback.apply_feedback(con, accepted, k)
