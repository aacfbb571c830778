"""Stage correct@it<k>: human labels (locked) first, then the annotator's (LLM's) confident
answers, then the correction rule's verdicts (judge@it<k>: flips, holds, reverts, rows set
aside); every change and every aside move in label_history; the convergence check.

Human feedback (reviewed files under feedback.dir) is applied in every iteration, converged or
not, so no later automatic step can change those rows. Once converged, labels pass through."""

from __future__ import annotations

import pandas as pd

from sentiloop import convergence, correction, feedback, store
from sentiloop.jsonio import read_json, write_json
from sentiloop.layout import Layout
from sentiloop.settings import Settings


def run(s: Settings, L: Layout, k: int) -> dict:
    prev_store, out_store = L.store(k - 1), L.store(k)
    chunk, classes = s.loop.chunk_size, s.classes
    accepted, rejects = feedback.load_feedback(
        L.feedback(s.feedback.dir), classes, prev_store, allowed_splits=tuple(s.feedback.splits)
    )
    human = feedback.feedback_stats(accepted, rejects)
    for r in rejects.head(20).itertuples(index=False):
        print(f"feedback rejected: {r.file}:{r.line} id={r.id} label={r.label}: {r.reason}")
    state = convergence.LoopState.from_dict(read_json(L.state(k - 1)))
    ev = read_json(L.eval(k - 1))
    noise = read_json(L.noise(k))
    state.dev_f1.append(float(ev["ensemble"]["dev"]["macro_f1"]))
    state.noise_rate.append(float(noise["noise_rate"]))
    state.residual_noise.append(float(noise["residual_noise"]))
    state.expected_gain.append(float(noise["expected_gain"]))
    last = state.history[-1] if state.history else {}
    lex = ev["members"].get("lexicon", {})
    done, reason = convergence.check(
        state,
        s.convergence,
        last_label_change=last.get("label_change_rate"),
        last_dict_change=lex.get("dict_change_rate") if state.history else None,
    )
    state.k = k
    if done and not state.converged:
        state.converged, state.termination_reason, state.converged_at = True, reason, k - 1
    n_train = store.count(prev_store, "split = 'train'")
    if state.converged:
        with store.atomic_db(out_store, copy_from=prev_store) as con:
            human_changes = _apply_human(con, accepted, k)
        record = {
            "k": k,
            "passed_through": True,
            "label_change_rate": human_changes / max(n_train, 1),
            "changes": human_changes,
            "corrections_by_source": {"human": human_changes} if human_changes else {},
        }
    else:
        human_locked = set(accepted["id"].astype(str)) if len(accepted) else set()
        answers = pd.read_parquet(L.relabel(k))
        judged = pd.read_parquet(L.judgement(k))
        before = store.read_column_values(
            prev_store, ["id", "aside"], where="split = 'train' AND locked = 0", chunk_size=chunk
        ).set_index("id")["aside"]
        judged = judged[judged["id"].isin(before.index)]  # rows locked since judge ran stay as they are
        d = correction.decide(
            judged,
            before,
            classes,
            llm_answers=answers,
            llm_min_confidence=s.llm.min_confidence,
            human_locked=human_locked,
        )
        with store.atomic_db(out_store, copy_from=prev_store) as con:
            human_changes = _apply_human(con, accepted, k)
            applied = store.apply_label_changes(con, d.changes)
            if applied != len(d.changes):
                raise correction.CorrectionError(f"{len(d.changes)} changes decided but {applied} applied")
            store.set_judgement(con, d.aside["id"], d.aside["aside"], d.aside["p_wrong"])
            store.settle(con, d.settled)
            store.write_history(
                con,
                (
                    tuple(r)[:1] + (k,) + tuple(r)[1:]
                    for r in pd.concat([d.changes, d.aside_moves]).itertuples(index=False)
                ),
            )
        auto = d.changes["source"].value_counts()
        total = int(len(d.changes)) + human_changes
        record = {
            "k": k,
            "passed_through": False,
            "changes": total,
            "label_change_rate": float(total / max(n_train, 1)),
            "corrections_by_source": {
                **({"human": human_changes} if human_changes else {}),
                **{src: int(v) for src, v in auto.items()},
            },
            "restored": int((d.changes["action"] == "restore").sum()),
            "set_aside": int((d.aside_moves["action"] == "aside").sum()),
            "brought_back": int((d.aside_moves["action"] == "unaside").sum()),
            "settled_by_llm": len(d.settled),
            "flip_at": noise.get("flip_at"),
            "estimated_noise_rate": noise["noise_rate"],
            "residual_noise": noise["residual_noise"],
        }
    correction.assert_test_unchanged(out_store, chunk)
    record["class_distribution"] = store.label_counts(out_store, "current_label", "train")
    record["aside"] = store.count(out_store, "split = 'train' AND aside = 1")
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
