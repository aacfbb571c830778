"""What does an LLM annotator add to the loop? NSMC with planted noise, `simulated` vs `none`.

Builds a seeded subset of NSMC (binary: ratings 1-4 negative, 9-10 positive), flips a share of
the labels at random (symmetric noise; the true labels go to data/gold.sqlite, which the loop
never reads), then runs the loop's own step functions (sentiloop.steps: ingest, split, train,
predict, relabel, correct, retrain; what `dvc repro` runs) with the lexicon member, once with
llm=none and once with llm=simulated at the given accuracy, and compares train-label accuracy
against gold after every iteration.

"LLM calls" counts the sentences the annotator was paid to answer (status `answered`, summed over
iterations): a sentence asked again in a later iteration is answered from the response cache for
free, with the simulated annotator (cached per sentence id) as with a real provider. Requests
(batches of llm.batch_size sentences) are reported too.

  python bench/llm_gain.py --rows 8000 --noise 0.3 --iterations 3 --accuracy 0.9 \
      --max-rows 500 --out /tmp/llm_gain
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sentiloop import store  # noqa: E402
from sentiloop.evaluation import label_quality  # noqa: E402
from sentiloop.layout import Layout  # noqa: E402
from sentiloop.predictions import read_predictions  # noqa: E402
from sentiloop.settings import compose_settings  # noqa: E402
from sentiloop.steps import correct, ingest, predict, relabel, split, train  # noqa: E402

NSMC = ROOT.parent.parent / "shared" / "data" / "nsmc" / "nsmc_reviews.tsv.gz"
CLASSES = ["negative", "positive"]


def planted_noise_corpus(src: Path, rows: int, noise: float, seed: int, out_csv: Path) -> dict:
    """Seeded subset of NSMC with `noise` of the labels flipped; columns id, document, label, gold."""
    frame = pd.read_csv(
        src, sep="\t", compression="gzip", dtype={"id": str, "document": str}, keep_default_na=False, quoting=3
    )
    frame["rating"] = pd.to_numeric(frame["rating"], errors="coerce")
    frame = frame[frame["rating"].isin([1, 2, 3, 4, 9, 10]) & (frame["document"].str.strip() != "")]
    frame = frame.drop_duplicates("id").sample(n=rows, random_state=seed).reset_index(drop=True)
    gold = np.where(frame["rating"] >= 9, "positive", "negative")
    rng = np.random.default_rng(seed)
    flip = rng.random(len(frame)) < noise
    noisy = np.where(flip, np.where(gold == "positive", "negative", "positive"), gold)
    out = pd.DataFrame({"id": frame["id"], "document": frame["document"], "label": noisy, "gold": gold})
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_csv, index=False)
    return {"rows": int(len(out)), "flipped": int(flip.sum()), "positive_share": float((gold == "positive").mean())}


def train_label_quality(db: Path, gold_db: Path) -> dict:
    train = store.read_column_values(db, ["id", "label", "current_label"], where="split = 'train'")
    gold = pd.concat(list(store.iter_chunks(gold_db, ["id", "gold_label"], table="gold")), ignore_index=True)
    f = train.merge(gold, on="id", how="inner")
    q = label_quality(f["gold_label"], f["label"], f["current_label"])
    return {**{k: v for k, v in q.items() if k != "n_train"}, "n_train": int(len(train))}


def run_loop(work: Path, csv: Path, llm: str, args, max_rows: int) -> dict:
    """One full loop in `work` with the given llm group; returns per-iteration records."""
    work.mkdir(parents=True, exist_ok=True)
    overrides = [
        "data=file",
        f"data.path={csv}",
        "data.language=ko",
        "data.classes=[negative,positive]",
        "data.id_column=id",
        "data.text_column=document",
        "data.label_column=label",
        "data.gold_column=gold",
        "data.label_map={negative:negative,positive:positive}",
        f"loop.max_iterations={args.iterations}",
        f"llm={llm}",
        f"llm.budget.max_rows={max_rows}",
        f"llm.simulated.accuracy={args.accuracy}",
        "ensemble.members=[lexicon]",
        f"seed={args.seed}",
        # fixed iteration count: the comparison is at equal iterations, not at convergence
        "convergence.label_change_eps=0",
        "convergence.dict_change_eps=0",
        "convergence.patience=1000",
    ]
    s = compose_settings(overrides)
    L = Layout(work)
    n = s.loop.max_iterations
    gold_db = L.gold
    t0 = time.perf_counter()
    ingest.run(s, L)
    split.run(s, L)
    train.run(s, L, "lexicon")
    records = [{"k": 0, **train_label_quality(L.store(0), gold_db)}]
    answered: set[str] = set()
    requests = 0
    for k in range(1, n + 1):
        predict.run(s, L, k)
        usage = relabel.run(s, L, k)
        rel = pd.read_parquet(L.relabel(k))
        fresh = rel[rel["status"] == "answered"] if "status" in rel else rel.iloc[0:0]
        if set(fresh["id"]) & answered:
            raise AssertionError("a sentence was paid for twice")
        answered |= set(fresh["id"])
        requests += int(usage.get("requests", 0))
        rec = correct.run(s, L, k)
        train.retrain(s, L, k, "lexicon")
        q = train_label_quality(L.store(k), gold_db)
        records.append(
            {
                "k": k,
                **q,
                "queued": usage.get("queued"),
                "llm_rows_answered": usage.get("rows_answered", 0),
                "llm_rows_cached": usage.get("rows_cached", 0),
                "llm_requests": usage.get("requests", 0),
                "changes": rec.get("changes"),
                "by_source": rec.get("corrections_by_source"),
                "llm_distinct_calls_so_far": len(answered),
            }
        )
    ev = predict.final(s, L)
    pred = read_predictions(L.final_predictions, ["id", "ens_label"], split="test")
    gold = pd.concat(list(store.iter_chunks(gold_db, ["id", "gold_label"], table="gold")), ignore_index=True)
    t = pred.merge(gold, on="id")
    return {
        "llm": llm,
        "records": records,
        "test_accuracy_vs_gold": float((t["ens_label"] == t["gold_label"]).mean()),
        "llm_calls": len(answered),
        "llm_requests": requests,
        "test_accuracy": ev["ensemble"]["test"]["accuracy"],
        "seconds": time.perf_counter() - t0,
    }


def corpus_train(runs: dict) -> int:
    """Train rows of the run (the same split for every run: same data, same seed)."""
    r = runs["none"]["records"][0]
    return int(r.get("n_train", 0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--accuracy", type=float, default=0.9)
    p.add_argument(
        "--max-rows", default="500", help="llm.budget.max_rows per iteration; a comma list runs one simulated loop each"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--source", type=Path, default=NSMC)
    p.add_argument("--out", type=Path, default=Path("/tmp/sentiloop_llm_gain"))
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    csv = args.out / "nsmc_noisy.csv"
    corpus = planted_noise_corpus(args.source, args.rows, args.noise, args.seed, csv)
    budgets = [int(x) for x in str(args.max_rows).split(",")]
    runs = {"none": run_loop(args.out / "none", csv, "none", args, budgets[0])}
    for b in budgets:
        runs[f"simulated@{b}"] = run_loop(args.out / f"simulated_{b}", csv, "simulated", args, b)
    base = runs["none"]["records"][-1]
    comparisons = []
    for b in budgets:
        r = runs[f"simulated@{b}"]
        sim = r["records"][-1]
        gain = sim["label_accuracy"] - base["label_accuracy"]
        calls = r["llm_calls"]
        comparisons.append(
            {
                "max_rows_per_iteration": b,
                "label_accuracy_none": base["label_accuracy"],
                "label_accuracy_simulated": sim["label_accuracy"],
                "gain_pp": 100 * gain,
                "test_accuracy_vs_gold_none": runs["none"]["test_accuracy_vs_gold"],
                "test_accuracy_vs_gold_simulated": r["test_accuracy_vs_gold"],
                "llm_calls": calls,
                "llm_requests": r["llm_requests"],
                "gain_pp_per_1000_calls": 100 * gain / (calls / 1000) if calls else None,
                "labels_fixed_per_1000_calls": gain * corpus_train(runs) / (calls / 1000) if calls else None,
            }
        )
    result = {
        "command": "python bench/llm_gain.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores (shared), Python {platform.python_version()}",
        "corpus": corpus,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "comparisons": comparisons,
        "runs": runs,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2, default=str))
    for llm, r in runs.items():
        print(
            f"\n{llm}: {r['seconds']:.0f}s, final ensemble test accuracy vs gold "
            f"{r['test_accuracy_vs_gold']:.4f} (vs the noisy test labels {r['test_accuracy']:.4f})"
        )
        for rec in r["records"]:
            print(
                "  it{k}: label_acc {label_accuracy:.4f} corrections {corrections} precision "
                "{correction_precision:.3f} recall {correction_recall:.3f}".format(**rec),
                {
                    k: rec.get(k)
                    for k in ("by_source", "llm_rows_answered", "llm_rows_cached", "llm_distinct_calls_so_far")
                    if k in rec
                },
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
