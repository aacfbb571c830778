"""Stage publish: the refined corpus (current_label + label_history) and the loop's verdict
(termination reason, converged_at) in metrics/summary.json."""

from __future__ import annotations

from sentiloop import convergence, correction, store
from sentiloop.jsonio import read_json, write_json
from sentiloop.layout import Layout
from sentiloop.settings import Settings


def run(s: Settings, L: Layout) -> dict:
    n, chunk = s.loop.max_iterations, s.loop.chunk_size
    last_store, out_store = L.store(n), L.final_store
    state = convergence.LoopState.from_dict(read_json(L.state(n)))
    ev = read_json(L.eval(n))
    last = state.history[-1] if state.history else {}
    lex = ev["members"].get("lexicon", {})
    if not state.converged:
        state.dev_f1.append(float(ev["ensemble"]["dev"]["macro_f1"]))
    state = convergence.finish(
        state,
        s.convergence,
        n,
        last_label_change=last.get("label_change_rate"),
        last_dict_change=lex.get("dict_change_rate"),
    )
    with store.atomic_db(out_store, copy_from=last_store) as con:
        con.execute("CREATE INDEX IF NOT EXISTS history_sentence ON label_history (sentence_id)")
    correction.assert_test_unchanged(out_store, chunk)
    changed = store.count(out_store, "split = 'train' AND label != current_label")
    n_train = store.count(out_store, "split = 'train'")
    summary = {
        "converged_at": state.converged_at,
        "termination_reason": state.termination_reason,
        "iterations_run": sum(1 for h in state.history if not h.get("passed_through")),
        "final_label_change_rate": float(last.get("label_change_rate", 0.0)),
        "labels_changed_total": changed,
        "labels_changed_share": changed / max(n_train, 1),
        "test_macro_f1": ev["ensemble"]["test"]["macro_f1"],
        "test_accuracy": ev["ensemble"]["test"]["accuracy"],
        "dev_macro_f1": ev["ensemble"]["dev"]["macro_f1"],
        "members_test_macro_f1": {m: e["test"]["macro_f1"] for m, e in ev["members"].items()},
        # the correction rule's view at the end: rows set aside (not trained on), the noise
        # it estimated in the original labels and what it expects is left
        "aside_total": store.count(out_store, "split = 'train' AND aside = 1"),
        "estimated_noise_rate": state.noise_rate[-1] if state.noise_rate else None,
        "estimated_residual_noise": state.residual_noise[-1] if state.residual_noise else None,
    }
    write_json(L.summary, summary)
    return summary
