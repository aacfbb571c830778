"""The hard rows shown to the LLM reviewer and listed in the report."""

from __future__ import annotations

import pandas as pd


def review_samples(
    labels: pd.DataFrame,
    *,
    predictions: pd.DataFrame | None = None,
    answers: pd.DataFrame | None = None,
    texts=None,
    max_samples: int = 20,
    max_chars: int = 200,
) -> list[dict]:
    """Hard rows, a third each: the LLM disagreed with the ensemble; the ensemble confidently
    disagrees with the label (misclassified, or mislabeled); the members conflict most.

    texts: a DataFrame (id, text), or a callable ids -> DataFrame (id, text) so a stage can read
    the few texts it needs from the store instead of loading every text; default: labels.text."""
    if predictions is None or not len(predictions):
        return []
    pr = predictions.astype({"id": str}).merge(
        labels.astype({"id": str})[["id", "current_label"]], on="id", how="inner"
    )
    if "split" in pr.columns:
        pr = pr[pr["split"] == "train"]
    picks: list[tuple[str, str]] = []
    per = max(1, max_samples // 3)
    llm = None
    if answers is not None and len(answers) and "llm_label" in answers.columns:
        a = answers[answers["llm_label"].notna()].astype({"id": str})
        llm = a.drop_duplicates("id").set_index("id")
        d = pr.merge(a[["id", "llm_label", "llm_confidence"]], on="id")
        d = d[d["llm_label"] != d["ens_label"]].sort_values(["llm_confidence", "id"], ascending=[False, True])
        picks += [(i, "llm_vs_ensemble") for i in d["id"].head(per)]
    mis = pr[pr["ens_label"] != pr["current_label"]].sort_values(["confidence", "id"], ascending=[False, True])
    picks += [(i, "ensemble_vs_label") for i in mis["id"].head(per)]
    conf = pr.sort_values(["agreement", "confidence", "id"], ascending=True)
    picks += [
        (i, "member_conflict" if a < 1.0 else "least_confident")
        for i, a in zip(conf["id"].head(max_samples), conf["agreement"].head(max_samples))
    ]
    chosen: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, why in picks:
        if i not in seen and len(chosen) < max_samples:
            seen.add(i)
            chosen.append((i, why))
    if callable(texts):
        tf = texts([i for i, _ in chosen])
    else:
        tf = texts if texts is not None else (labels if "text" in labels.columns else None)
    if tf is None or not len(chosen):
        return []
    text_of = tf.astype({"id": str}).drop_duplicates("id").set_index("id")["text"]
    row = pr.drop_duplicates("id").set_index("id")
    out = []
    for i, why in chosen:
        if i not in text_of.index:
            continue
        r = row.loc[i]
        item = {
            "id": i,
            "why": why,
            "text": " ".join(str(text_of.loc[i]).split())[:max_chars],
            "label": r["current_label"],
            "ensemble": r["ens_label"],
            "confidence": round(float(r["confidence"]), 3),
            "agreement": round(float(r["agreement"]), 3),
        }
        if llm is not None and i in llm.index:
            item["llm_label"] = llm.loc[i, "llm_label"]
        out.append(item)
    return out
