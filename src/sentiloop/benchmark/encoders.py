"""Korean members on gold labels: which offline encoder the BERT member should read with, and
what each member and the ensemble score on NSMC.

Why gold labels: this measures whether a member *reads* the language (the planted-noise table
measures the loop). Data: the quality benchmark's subset (sentiloop.benchmark.data: balanced,
seed 13, 20,000 train / 5,000 test); `dev_share` of the train rows are held out as the dev split
(early stopping, ensemble weights), as the pipeline's split does.

Measured:
- encoding throughput of each candidate encoder, at 1 and 2 threads, each in its own subprocess
  (thread settings must precede the libraries' loading), warm (model loaded, 10 texts first);
- each encoder's test accuracy as the BERT member's `head` (conf/'s head config, features
  cached in `feature_cache`, keyed by encoder + text, so a rerun re-encodes nothing);
- every member's test accuracy (configured from conf/ with data=nsmc, the BERT member with
  `pretrained: auto`), and the ensemble's with the seed weights and with the weights the
  pipeline now chooses (weights.choose_weights on dev).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from sentiloop.benchmark.data import BenchmarkDataError, SubsetSpec, draw_subset, find_nsmc, load_nsmc_binary
from sentiloop.benchmark.runner import REPO_ROOT, machine_description

ENCODERS = ("minilm", "multilingual-e5-small-q4", "use-multilingual-v3")
MEMBERS = ("lexicon", "lstm", "bilstm", "bert")
SECTION = "bench:encoders"
HEADING = "Korean: encoders and members on gold labels (issue 12)"


@dataclass
class EncoderBench:
    n_train: int = 20_000
    n_test: int = 5_000
    dev_share: float = 0.1
    subset_seed: int = 13
    model_seed: int = 42
    encoders: tuple[str, ...] = ENCODERS
    throughput_encoders: tuple[str, ...] | None = None  # None: the same as `encoders`
    members: tuple[str, ...] = MEMBERS
    threads: tuple[int, ...] = (1, 2)
    throughput_texts: int = 300
    pool_rows: int | None = None
    nsmc_path: str | None = None
    reuse: bool = False
    encoder_train: int | None = None  # BERT heads train on the first N train rows (None: all)
    feature_cache: str = str(REPO_ROOT / ".cache" / "bench_bert_features")
    workdir: str = "bench/out/encoders"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def load_data(run: EncoderBench):
    nsmc = Path(run.nsmc_path) if run.nsmc_path else find_nsmc(REPO_ROOT)
    if nsmc is None or not nsmc.exists():
        raise BenchmarkDataError(
            "NSMC not found: expected ../shared/data/nsmc/nsmc_reviews.tsv.gz "
            "beside the repository (or pass --nsmc / set $SENTILOOP_NSMC)"
        )
    frame = draw_subset(
        load_nsmc_binary(nsmc, max_rows=run.pool_rows),
        SubsetSpec(n_train=run.n_train, n_test=run.n_test, seed=run.subset_seed),
    )
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    n_dev = int(round(len(train) * run.dev_share))
    dev, train = train.iloc[:n_dev], train.iloc[n_dev:]
    as_xy = lambda f: (f["text"].astype(str).tolist(), f["gold"].to_numpy().astype(np.int64))  # noqa: E731
    return as_xy(train), as_xy(dev), as_xy(test)


# --- throughput: one subprocess per (encoder, threads) --------------------------------------


def throughput_child(encoder: str, threads: int, texts_file: str) -> dict:
    """Warm encoding speed of one encoder with `threads` threads (run in a fresh process)."""
    os.environ["SENTILOOP_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    texts = json.loads(Path(texts_file).read_text())
    from sentiloop.models.encoders import PackageEncoder, resolve_encoder
    from sentiloop.settings import compose as compose_config

    spec = resolve_encoder(encoder, "ko")
    t0 = time.perf_counter()
    if spec.is_package:
        enc = PackageEncoder(spec, threads=threads)
        cfg = {}
    else:
        import torch

        torch.set_num_threads(threads)
        from sentiloop.models.bert_features import Encoder

        cfg = compose_config(["data=nsmc"])["models"]["bert"]
        enc = Encoder(
            spec.source,
            max_length=int(cfg["max_length"]),
            pooling=cfg["pooling"],
            device=torch.device("cpu"),
            bf16=False,
            batch_size=int(cfg["predict_batch_size"]),
            cpu_int8=bool(cfg["cpu_int8"]),
        )
    load_s = time.perf_counter() - t0
    enc.encode(texts[:10])
    c0, t0 = time.process_time(), time.perf_counter()
    enc.encode(texts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "encoder": encoder,
        "threads": threads,
        "texts": len(texts),
        "load_s": round(load_s, 2),
        "sentences_per_s": round(len(texts) / wall, 1),
        "cpu_s": round(cpu, 2),
        "sentences_per_cpu_s": round(len(texts) / max(cpu, 1e-9), 1),
        "int8": bool(cfg.get("cpu_int8")) if cfg else None,
    }


def measure_throughput(run: EncoderBench, texts: Sequence[str], log=print) -> list[dict]:
    work = Path(run.workdir)
    work.mkdir(parents=True, exist_ok=True)
    texts_file = work / "throughput_texts.json"
    texts_file.write_text(json.dumps(list(texts)[: run.throughput_texts], ensure_ascii=False))
    out = []
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for enc in run.throughput_encoders or run.encoders:
        for th in run.threads:
            before = _loadavg()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sentiloop.benchmark.encoders",
                    "--throughput-child",
                    enc,
                    str(th),
                    str(texts_file),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"throughput of {enc} with {th} threads failed:\n{proc.stderr[-2000:]}")
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            rec["load_before"], rec["load_after"] = before, _loadavg()
            log(
                f"  {enc} threads={th}: {rec['sentences_per_s']} sentences/s (wall), "
                f"{rec['sentences_per_cpu_s']} per CPU-second"
            )
            out.append(rec)
    return out


# --- accuracy -------------------------------------------------------------------------------


def _acc(p: np.ndarray, y: np.ndarray) -> float:
    return round(float((np.asarray(p).argmax(axis=1) == y).mean()), 4)


def fit_and_score(
    kind: str, cfg: dict, train, dev, test, seed: int, reuse_dir: Path | None = None
) -> tuple[dict, dict]:
    """Fit one member on gold labels; returns (record, {dev: probs, test: probs}).

    With `reuse_dir`, the result is stored under a key of (member, config, seed, data) and a
    later run with the same key reads it instead of fitting again (`--reuse`: resuming a long
    run on a busy machine; the record says so)."""
    import hashlib

    data = [train[0], train[1].tolist(), dev[0], dev[1].tolist(), test[0]]
    key = hashlib.sha1(
        json.dumps([kind, cfg, seed, data], sort_keys=True, default=str, ensure_ascii=False).encode()
    ).hexdigest()[:16]
    stored = Path(reuse_dir) / f"{kind}-{key}.json" if reuse_dir else None
    if stored is not None and stored.exists():
        rec = json.loads(stored.read_text())
        return {**rec["record"], "reused": True}, {k: np.asarray(v) for k, v in rec["probs"].items()}
    rec, probs = _fit_and_score(kind, cfg, train, dev, test, seed)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps({"record": rec, "probs": {k: v.tolist() for k, v in probs.items()}}))
    return rec, probs


def _fit_and_score(kind: str, cfg: dict, train, dev, test, seed: int) -> tuple[dict, dict]:
    from sentiloop.models import build_model

    t0, c0 = time.perf_counter(), time.process_time()
    model = build_model(kind, ["negative", "positive"], cfg, language="ko", seed=seed)
    model.fit(train[0], train[1], eval_set=dev)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    probs = {"dev": model.predict_proba(dev[0]), "test": model.predict_proba(test[0])}
    rec = {
        "member": kind,
        "train_rows": len(train[0]),
        "fit_s": round(fit_s, 1),
        "fit_cpu_s": round(fit_cpu_s, 1),
        "predict_s": round(time.perf_counter() - t0, 1),
        "dev_accuracy": _acc(probs["dev"], dev[1]),
        "test_accuracy": _acc(probs["test"], test[1]),
    }
    if kind == "bert":
        h = model.history_[0]
        rec.update(
            {"encoder": model.encoder_.name, "encoded": h.get("encoded", 0), "featurize_s": h.get("featurize_s")}
        )
    return rec, probs


def run_bench(run: EncoderBench, *, log=print) -> dict:
    from sentiloop import ensemble
    from sentiloop.benchmark.runner import TOKEN_CACHE
    from sentiloop.settings import compose as compose_config
    from sentiloop.text.token_cache import use_token_cache
    from sentiloop.weights import choose_weights

    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = _loadavg()
    train, dev, test = load_data(run)
    log(f"NSMC gold subset: {len(train[0]):,} train / {len(dev[0]):,} dev / {len(test[0]):,} test")
    cfg = compose_config(["data=nsmc", f"seed={run.model_seed}"])
    results: dict = {
        "spec": asdict(run),
        "machine": machine_description(),
        "started": started,
        "load_before": load_before,
    }
    log("encoding throughput ...")
    results["throughput"] = measure_throughput(run, test[0], log=log) if run.threads else []

    log("encoders as the BERT member's head ...")
    bert_cfg = {**cfg["models"]["bert"], "feature_cache": run.feature_cache}
    results["encoders"] = []
    encoder_probs = {}
    head_train = train if run.encoder_train is None else (train[0][: run.encoder_train], train[1][: run.encoder_train])
    results["encoder_train_rows"] = len(head_train[0])
    reuse_dir = Path(run.workdir) / "fitted" if run.reuse else None
    for enc in run.encoders:
        rec, probs = fit_and_score(
            "bert", {**bert_cfg, "pretrained": enc}, head_train, dev, test, run.model_seed, reuse_dir
        )
        encoder_probs[enc] = probs
        results["encoders"].append(rec)
        log(f"  {enc}: test accuracy {rec['test_accuracy']} (encoded {rec['encoded']:,} texts this run)")

    log("members ...")
    members: dict[str, dict] = {}
    probs: dict[str, dict] = {}
    with use_token_cache(Path(run.workdir) / TOKEN_CACHE):
        for kind in run.members:
            if kind == "bert":
                from sentiloop.models.encoders import resolve_encoder

                auto = resolve_encoder(cfg["models"]["bert"].get("pretrained"), "ko").name
                if auto in encoder_probs:  # the same fit as the encoder table's row
                    rec = {**next(r for r in results["encoders"] if r["encoder"] == auto), "member": "bert"}
                    members[kind], probs[kind] = rec, encoder_probs[auto]
                    log(f"  bert (auto = {auto}): test accuracy {rec['test_accuracy']}")
                    continue
            rec, p = fit_and_score(
                kind,
                {**cfg["models"][kind], **({"feature_cache": run.feature_cache} if kind == "bert" else {})},
                head_train if kind == "bert" else train,
                dev,
                test,
                run.model_seed,
                reuse_dir,
            )
            members[kind], probs[kind] = rec, p
            log(f"  {kind}: test accuracy {rec['test_accuracy']} ({rec['fit_s']} s fit)")
    results["members"] = list(members.values())

    seed_w = ensemble.normalised_weights(list(probs), {m: cfg["ensemble"]["weights"][m] for m in probs})
    decision = choose_weights(
        {m: p["dev"] for m, p in probs.items()}, dev[1], seed_w, evidence="dev", seed=run.model_seed
    )
    ens = {}
    for name, w in (("seed weights", seed_w), ("fitted weights (default)", decision.weights)):
        ens[name] = {
            "weights": {m: round(v, 4) for m, v in w.items()},
            "test_accuracy": _acc(ensemble.combine({m: p["test"] for m, p in probs.items()}, w), test[1]),
            "dev_accuracy": _acc(ensemble.combine({m: p["dev"] for m, p in probs.items()}, w), dev[1]),
        }
    results["ensemble"] = ens
    results["weighting"] = decision.to_dict()
    best = max(members.values(), key=lambda r: r["test_accuracy"])
    results["best_member"] = {"member": best["member"], "test_accuracy": best["test_accuracy"]}
    results["load_after"] = _loadavg()
    results["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    Path(run.workdir).mkdir(parents=True, exist_ok=True)
    (Path(run.workdir) / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return results


# --- report ---------------------------------------------------------------------------------


def render(results: dict, command: str) -> str:
    s = results["spec"]
    lines = [
        f"Measured {results['started']} – {results['finished']} on {results['machine']}. Load average "
        f"before/after: {results['load_before']} / {results['load_after']} (the 2-core machine is "
        f"shared with other jobs: speeds are under contention).",
        "",
        "```",
        command,
        "```",
        "",
        f"- Data: NSMC binary (ratings 1-4 / 9-10), balanced, subset seed {s['subset_seed']} (the quality "
        f"benchmark's): {s['n_train']:,} train rows, of which {s['dev_share']:.0%} are the dev split "
        f"(early stopping, ensemble weights), and {s['n_test']:,} test rows. **Gold labels**, no noise.",
        f"- Members configured from conf/ with `data=nsmc`, model seed {s['model_seed']}; the BERT member "
        "is the `head` strategy (frozen encoder, features cached per encoder + text, an MLP head).",
        "",
    ]
    lines += [
        f"**Encoding throughput** (warm; each row a fresh process; {s['throughput_texts']} test reviews)",
        "",
        "| encoder | threads | sentences/s (wall) | sentences per CPU-second | load avg before |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results["throughput"]:
        lines.append(
            f"| {r['encoder']} | {r['threads']} | {r['sentences_per_s']} | {r['sentences_per_cpu_s']} | "
            f"{r['load_before'][0] if r['load_before'] else '–'} |"
        )
    n_head = results.get("encoder_train_rows")
    n_all = s["n_train"] - int(round(s["n_train"] * s["dev_share"]))
    head_note = (
        ""
        if not n_head or n_head >= n_all
        else (f"; trained on the first {n_head:,} of the {n_all:,} train rows: `--encoder-train`")
    )
    lines += [
        "",
        f"**Each encoder as the BERT member** (head on cached features{head_note})",
        "",
        "| encoder | train rows | dev acc. | test acc. | texts encoded this run | fit: wall s / CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["encoders"]:
        lines.append(
            f"| {r['encoder']} | {r.get('train_rows', '')} | {r['dev_accuracy']:.4f} | "
            f"{r['test_accuracy']:.4f} | {r.get('encoded', 0):,} | {r['fit_s']:.1f} / "
            f"{r.get('fit_cpu_s', '–')} |"
        )
    lines += [
        "",
        "**Members and ensemble** (test accuracy on gold labels)",
        "",
        "| model | test acc. | dev acc. | weights |",
        "|---|---:|---:|---|",
    ]
    for r in results["members"]:
        name = r["member"] + (f" (`{r['encoder']}`)" if r.get("encoder") else "") + (" ‡" if r.get("reused") else "")
        lines.append(f"| {name} | {r['test_accuracy']:.4f} | {r['dev_accuracy']:.4f} | |")
    for name, e in results["ensemble"].items():
        w = ", ".join(f"{m} {v:.3f}" for m, v in e["weights"].items())
        lines.append(f"| ensemble, {name} | **{e['test_accuracy']:.4f}** | {e['dev_accuracy']:.4f} | {w} |")
    if any(r.get("reused") for r in results["members"] + results["encoders"]):
        lines += [
            "",
            "‡ fitted by an earlier run of this command (`--reuse`: same config, seed and data), "
            "read back from the work directory.",
        ]
    best = results["best_member"]
    fitted = results["ensemble"]["fitted weights (default)"]["test_accuracy"]
    lines += [
        "",
        f"Best member: {best['member']} {best['test_accuracy']:.4f}; the ensemble with fitted weights "
        f"is {100 * (fitted - best['test_accuracy']):+.2f} points from it.",
    ]
    z = results["weighting"].get("zeroed") or {}
    if z:
        lines += [""] + [f"- weight 0 for {m}: {why}" for m, why in z.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/encoders.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train", type=int, default=20_000, help="train rows (dev split included)")
    p.add_argument("--test", type=int, default=5_000)
    p.add_argument("--dev-share", type=float, default=0.1)
    p.add_argument("--subset-seed", type=int, default=13)
    p.add_argument("--model-seed", type=int, default=42)
    p.add_argument("--encoders", default=",".join(ENCODERS))
    p.add_argument("--throughput-encoders", default=None, help="encoders for the throughput rows (default: --encoders)")
    p.add_argument("--members", default=",".join(MEMBERS))
    p.add_argument("--threads", default="1,2", help="thread counts for the throughput rows ('' to skip)")
    p.add_argument("--throughput-texts", type=int, default=300)
    p.add_argument("--pool-rows", type=int, default=None, help="draw from the first N raw rows only")
    p.add_argument("--nsmc", default=None)
    p.add_argument("--feature-cache", default=EncoderBench.feature_cache)
    p.add_argument(
        "--encoder-train",
        type=int,
        default=None,
        help="train the BERT heads on the first N train rows only (encoding is the slow part)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="reuse members fitted by an earlier run with the same config and data (workdir/fitted)",
    )
    p.add_argument("--workdir", default="bench/out/encoders")
    p.add_argument("--doc", default="docs/benchmarks.md")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--throughput-child", nargs=3, metavar=("ENCODER", "THREADS", "TEXTS_JSON"), help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    if a.throughput_child:
        enc, th, path = a.throughput_child
        print(json.dumps(throughput_child(enc, int(th), path)))
        return 0
    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    run = EncoderBench(
        n_train=a.train,
        n_test=a.test,
        dev_share=a.dev_share,
        subset_seed=a.subset_seed,
        model_seed=a.model_seed,
        encoders=split(a.encoders),
        throughput_encoders=split(a.throughput_encoders) if a.throughput_encoders else None,
        members=split(a.members),
        threads=tuple(int(t) for t in split(a.threads)),
        throughput_texts=a.throughput_texts,
        pool_rows=a.pool_rows,
        nsmc_path=a.nsmc,
        reuse=a.reuse,
        encoder_train=a.encoder_train,
        feature_cache=a.feature_cache,
        workdir=a.workdir,
    )
    results = run_bench(run)
    command = "python bench/encoders.py" + ("" if not argv else " " + " ".join(shlex.quote(x) for x in argv))
    text = render(results, command)
    print(text)
    if not a.no_doc:
        from sentiloop.benchmark.report import replace_section

        replace_section(a.doc, SECTION, text, heading=HEADING)
        print(f"wrote {a.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
