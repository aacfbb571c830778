"""Scale and speed: the pipeline's stages over 10% and 100% of NSMC, and per-member throughput.

Memory: for each corpus size, every stage (ingest, split, predict, judge, relabel, correct) runs in a
fresh subprocess, as `dvc repro` runs each stage in its own process, and reports its peak
resident memory (VmHWM). The members are fitted once beforehand on a fixed sample and copied in
as iteration 0's models: fitting is not among the measured stages (the issue asks for ingest,
predict and correct over the whole corpus), and a fixed model makes the two sizes comparable.

Corpus: `data=nsmc3` (ratings 1-4 negative, 5-8 neutral, 9-10 positive), so that every one of the
712,383 raw reviews is ingested (the binary mapping would keep ~500k). The 10% size is a seeded
sample of the raw file written to the work directory (never committed).

Throughput (sentences/s, one process, this machine's 2 cores): Kiwi tokenization alone, then
each member's scoring of already tokenized text, then each member's predict_proba on raw text
with the token cache warm (what the pipeline's predict stage does once the corpus is tokenized).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from sentiloop.benchmark.data import find_nsmc
from sentiloop.benchmark.runner import REPO_ROOT, child_env, machine_description, peak_rss_mb

FULL_ROWS = 712_383
STAGES = ("ingest", "split", "predict", "judge", "relabel", "correct")
SECTION = "bench:scale"


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- corpus samples -----------------------------------------------------------------------
def write_sample(src: Path, dst: Path, n_rows: int, seed: int, total: int | None = None) -> int:
    """A seeded sample of n_rows data lines of the raw TSV.gz (header kept), streamed."""
    if total is None:
        with gzip.open(src, "rt", encoding="utf-8") as fh:
            total = sum(1 for _ in fh) - 1
    keep = np.zeros(total, dtype=bool)
    keep[np.random.default_rng(seed).choice(total, size=min(n_rows, total), replace=False)] = True
    dst.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with gzip.open(src, "rt", encoding="utf-8") as fin, gzip.open(dst, "wt", encoding="utf-8", compresslevel=1) as fout:
        fout.write(fin.readline())
        for i, line in enumerate(fin):
            if keep[i]:
                fout.write(line)
                written += 1
    return written


# --- stage workers (each runs in its own subprocess) ----------------------------------------
def _settings(workdir: Path):
    from sentiloop.settings import from_dict

    return from_dict(json.loads((workdir / "params.json").read_text()))


def _nsmc(workdir: Path) -> Path:
    return Path((workdir / "nsmc.txt").read_text().strip())


def stage_main(argv: Sequence[str]) -> None:
    """python -m sentiloop.benchmark.scale <workdir> <size_dir> <stage>: one stage of the
    pipeline (sentiloop.steps, as its DVC stage runs it) with <size_dir> as the repository."""
    from sentiloop.layout import Layout
    from sentiloop.steps import correct, ingest, judge, predict, relabel, split

    workdir, size_dir, stage = Path(argv[0]), Path(argv[1]), argv[2]
    s = _settings(workdir).merged({"data": {"path": str((size_dir / "source.tsv.gz").absolute())}})
    L = Layout(size_dir)
    t0 = time.perf_counter()
    info: dict = {}
    if stage == "ingest":
        info = ingest.run(s, L)
        info = {k: info[k] for k in ("read", "accepted", "rejected", "kept")}
    elif stage == "split":
        info = split.run(s, L)["rows_per_split"]
    elif stage == "predict":
        models = L.models(0)
        if models.exists():
            shutil.rmtree(models)
        shutil.copytree(workdir / "models", models)
        ev = predict.run(s, L, 1)
        info = {"test_macro_f1": ev["ensemble"]["test"]["macro_f1"]}
    elif stage == "judge":
        rec = judge.run(s, L, 1)
        info = {"noise_rate": rec["noise_rate"], "flips": rec["flips"], "aside": rec["aside"]}
    elif stage == "relabel":
        info = relabel.run(s, L, 1)
    elif stage == "correct":
        rec = correct.run(s, L, 1)
        info = {"changes": rec.get("changes"), "aside": rec.get("aside")}
    else:
        raise SystemExit(f"unknown stage {stage!r}; one of {STAGES}")
    out = {
        "stage": stage,
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": peak_rss_mb(),
        "end_rss_mb": current_rss_mb(),
        "info": info,
    }
    (size_dir / f"stage_{stage}.json").write_text(json.dumps(out, indent=1, default=str))


def fit_main(argv: Sequence[str]) -> None:
    """Fit each member once on a seeded sample of the 3-class corpus: iteration 0's models."""
    from sentiloop.benchmark.data import iter_nsmc
    from sentiloop.models import build_model

    workdir, n_train = Path(argv[0]), int(argv[1])
    s = _settings(workdir)
    classes = s.classes
    lmap = {int(k): classes.index(v) for k, v in s.data.label_map.items()}
    frames = [c for c in iter_nsmc(_nsmc(workdir))]
    import pandas as pd

    corpus = pd.concat(frames, ignore_index=True)
    corpus = corpus[corpus["text"].str.strip() != ""]
    pick = np.random.default_rng(s.seed).choice(len(corpus), size=n_train, replace=False)
    texts = corpus["text"].iloc[pick].tolist()
    y = corpus["rating"].iloc[pick].map(lmap).to_numpy(dtype=np.int64)
    del corpus, frames
    out = {}
    for member in s.members:
        t0 = time.perf_counter()
        model = build_model(member, classes, s.member_config(member), language=s.data.language, seed=s.seed)
        model.fit(texts, y)
        model.save(workdir / "models" / member)
        out[member] = {"seconds": time.perf_counter() - t0, "n_train": n_train}
    (workdir / "fit.json").write_text(json.dumps(out, indent=1))


def throughput_main(argv: Sequence[str]) -> None:
    """Sentences/s: Kiwi alone; each member on tokens; each member on text with a warm cache."""
    from sentiloop.models import load_model
    from sentiloop.text.token_cache import use_token_cache
    from sentiloop.text.tokenize import tokenize_list

    workdir, n = Path(argv[0]), int(argv[1])
    kinds = _settings(workdir).members
    per_member_fresh = 3000
    fresh_n = per_member_fresh * len(kinds)
    # `fresh`: texts that no cache or per-process memo has seen, for the predict-with-Kiwi figure;
    # each member gets its own slice (the LSTM and BiLSTM share a per-process token memo)
    texts, fresh = _split_texts(_first_texts(_nsmc(workdir), 2 * max(n, fresh_n) + 2000), n, fresh_n)
    res: dict = {"n": len(texts), "n_fresh": len(fresh)}
    tokenize_list(texts[:50], "ko")  # load Kiwi outside the timing
    t0 = time.perf_counter()
    tokens = tokenize_list(texts, "ko")
    res["kiwi_tokenize_per_s"] = len(texts) / (time.perf_counter() - t0)
    cache_path = workdir / "throughput_tokens.sqlite"
    if cache_path.exists():
        cache_path.unlink()
    with use_token_cache(cache_path):
        tokenize_list(texts, "ko")  # fill (misses), not timed
    members = {}
    for i, member in enumerate(kinds):
        model = load_model(workdir / "models" / member)
        m: dict = {}
        if member == "lexicon":  # scores tokens directly
            model.predict_proba_tokens(tokens[:100])
            t0 = time.perf_counter()
            model.predict_proba_tokens(tokens)
            m["score_tokens_per_s"] = len(texts) / (time.perf_counter() - t0)
        if member == "bilstm":
            # the network alone: ids from the tokens above, then the batched forward pass
            model.predict_proba(texts[:50])  # warm up, and torch's thread settings
            t0 = time.perf_counter()
            ids, lens = model.vocab.encode_tokens(tokens, padding="post", return_lengths=True)
            model._proba_ids(ids, lens)
            m["score_tokens_per_s"] = len(texts) / (time.perf_counter() - t0)
        with use_token_cache(cache_path, readonly=True):
            model.predict_proba(texts[:100])
            t0 = time.perf_counter()
            model.predict_proba(texts)
            m["predict_cached_per_s"] = len(texts) / (time.perf_counter() - t0)
        part = fresh[i * per_member_fresh : (i + 1) * per_member_fresh]
        t0 = time.perf_counter()
        model.predict_proba(part)  # never seen: Kiwi tokenizes them
        m["predict_uncached_per_s"] = len(part) / (time.perf_counter() - t0)
        members[member] = m
    res["members"] = members
    res["peak_rss_mb"] = peak_rss_mb()
    (workdir / "throughput.json").write_text(json.dumps(res, indent=1))


def _split_texts(spread: list[str], n: int, fresh_n: int) -> tuple[list[str], list[str]]:
    """Every other text to each side, so both sets span the whole file; `fresh` gets no
    text that `texts` has (NSMC repeats short reviews)."""
    texts = spread[0::2][:n]
    seen = set(texts)
    fresh = [t for t in spread[1::2] if t not in seen][:fresh_n]
    return texts, fresh


def _first_texts(path: Path, n: int) -> list[str]:
    """n texts spread over the file (every k-th line), so all movies are represented."""
    step = max(1, FULL_ROWS // n)
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        next(fh)
        for i, line in enumerate(fh):
            if i % step == 0:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 4 and parts[2].strip():
                    out.append(parts[2])
                    if len(out) >= n:
                        break
    return out


def fill_cache_main(argv: Sequence[str]) -> None:
    """Tokenize every text of the raw corpus once into the work directory's token cache."""
    from sentiloop.benchmark.data import iter_nsmc
    from sentiloop.text.token_cache import use_token_cache
    from sentiloop.text.tokenize import tokenize_many

    workdir, nsmc = Path(argv[0]), Path(argv[1])
    t0 = time.perf_counter()
    n = 0
    with use_token_cache(workdir / "tokens.sqlite") as cache:
        for chunk in iter_nsmc(nsmc, chunk_size=5000):
            texts = [t.strip() for t in chunk["text"] if t.strip()]
            n += sum(1 for _ in tokenize_many(texts, "ko", negation=True))
        misses, distinct = cache.misses, len(cache)
    seconds = time.perf_counter() - t0
    (workdir / "fill.json").write_text(
        json.dumps(
            {
                "texts": n,
                "tokenized": misses,
                "distinct": distinct,
                "seconds": seconds,
                "per_s": misses / seconds if seconds else None,
                "peak_rss_mb": peak_rss_mb(),
                "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "load_after": [round(x, 2) for x in __import__("os").getloadavg()],
            },
            indent=1,
        )
    )


# --- orchestration -------------------------------------------------------------------------
def _run(module_args: list[str], *, timeout: float | None, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sentiloop.benchmark.scale", *module_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module_args} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t0


def compose_params(members: Sequence[str], overrides: Sequence[str], chunk: int) -> dict:
    from sentiloop.settings import compose

    return compose(
        [
            "data=nsmc3",
            "data.max_rows=null",
            f"ensemble.members=[{','.join(members)}]",
            "loop.max_iterations=1",
            f"loop.chunk_size={chunk}",
            # one fixed model judges in-sample: the stages' memory, not the rule's quality
            "loop.cross_fit=0",
            *overrides,
        ]
    )


def run_scale(
    *,
    sizes: Sequence[int],
    members: Sequence[str],
    workdir: Path,
    train_rows: int,
    throughput_rows: int,
    overrides: Sequence[str] = (),
    token_cache: bool = True,
    chunk: int = 5000,
    seed: int = 7,
    log=print,
    timeout: float | None = None,
    fill_cache: bool = False,
) -> dict:
    nsmc = find_nsmc(REPO_ROOT)
    if nsmc is None:
        raise FileNotFoundError("NSMC not found beside the repository (../shared/data/nsmc)")
    workdir.mkdir(parents=True, exist_ok=True)
    params = compose_params(members, overrides, chunk)
    (workdir / "params.json").write_text(json.dumps(params, indent=1, ensure_ascii=False))
    (workdir / "nsmc.txt").write_text(str(nsmc.resolve()))
    env = child_env()
    summary: dict = {
        "members": list(members),
        "sizes": {},
        "token_cache": token_cache,
        "machine": machine_description(),
        "chunk_size": chunk,
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": [round(x, 2) for x in __import__("os").getloadavg()],
    }
    if not (workdir / "fit.json").exists() or set(json.loads((workdir / "fit.json").read_text())) != set(members):
        log(f"fitting {', '.join(members)} on {train_rows:,} rows ...")
        _run(["fit", str(workdir), str(train_rows)], timeout=timeout, env=env)
    summary["fit"] = json.loads((workdir / "fit.json").read_text())
    log(f"throughput on {throughput_rows:,} sentences ...")
    _run(["throughput", str(workdir), str(throughput_rows)], timeout=timeout, env=env)
    summary["throughput"] = json.loads((workdir / "throughput.json").read_text())
    log(json.dumps(summary["throughput"]))
    if token_cache and fill_cache and not (workdir / "fill.json").exists():
        log("tokenizing the whole corpus once into the token cache ...")
        _run(["fill-cache", str(workdir), str(nsmc)], timeout=None, env=env)
    if (workdir / "fill.json").exists():
        summary["fill"] = json.loads((workdir / "fill.json").read_text())
    for size in sizes:
        size_dir = workdir / f"n{size}"
        if size_dir.exists():
            shutil.rmtree(size_dir)
        size_dir.mkdir(parents=True)
        t0 = time.perf_counter()
        if size >= FULL_ROWS:
            (size_dir / "source.tsv.gz").symlink_to(nsmc.resolve())
        else:
            write_sample(nsmc, size_dir / "source.tsv.gz", size, seed, total=FULL_ROWS)
        log(f"size {size:,}: sample written in {time.perf_counter() - t0:.1f}s")
        stage_env = dict(env)
        if token_cache:
            from sentiloop.text.token_cache import ENV_VAR

            stage_env[ENV_VAR] = str((workdir / "tokens.sqlite").resolve())
        stages = {}
        for stage in STAGES:
            wall = _run(["stage", str(workdir), str(size_dir), stage], timeout=timeout, env=stage_env)
            rec = json.loads((size_dir / f"stage_{stage}.json").read_text())
            rec["wall_s"] = wall
            stages[stage] = rec
            log(
                f"  {stage}: {rec['seconds']:.1f}s in-stage, {wall:.1f}s wall, peak {rec['peak_rss_mb']:.0f} MiB "
                f"{rec['info']}"
            )
        rows = stages["ingest"]["info"].get("kept")
        summary["sizes"][str(size)] = {
            "rows": rows,
            "stages": stages,
            "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
        }
    summary["load_after"] = [round(x, 2) for x in __import__("os").getloadavg()]
    (workdir / "scale.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("stage", "fit", "throughput", "fill-cache"):
        {"stage": stage_main, "fit": fit_main, "throughput": throughput_main, "fill-cache": fill_cache_main}[argv[0]](
            argv[1:]
        )
        return 0
    p = argparse.ArgumentParser(
        prog="bench/scale.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default=f"{FULL_ROWS // 10},{FULL_ROWS}")
    p.add_argument("--members", default="lexicon")
    p.add_argument("--train-rows", type=int, default=20_000)
    p.add_argument("--throughput-rows", type=int, default=20_000)
    p.add_argument("--chunk-size", type=int, default=5000)
    p.add_argument("--override", action="append", default=[])
    p.add_argument(
        "--no-token-cache", action="store_true", help="stages tokenize with Kiwi every time (no SENTILOOP_TOKEN_CACHE)"
    )
    p.add_argument(
        "--fill-cache",
        action="store_true",
        help="first tokenize the whole corpus once into the cache (timed, reported)",
    )
    p.add_argument("--workdir", default="bench/out/scale")
    p.add_argument("--doc", default="docs/benchmarks.md")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--section", default=SECTION, help="docs/benchmarks.md section to (re)write")
    p.add_argument("--heading", default=None)
    p.add_argument(
        "--token-cache-from",
        default=None,
        help="reuse another work directory's filled token cache (tokens.sqlite + fill.json)",
    )
    a = p.parse_args(argv)
    if a.token_cache_from:
        src, dst = Path(a.token_cache_from), Path(a.workdir)
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("tokens.sqlite", "fill.json"):
            if (src / name).exists() and not (dst / name).exists():
                shutil.copyfile(src / name, dst / name)
    summary = run_scale(
        sizes=[int(s) for s in a.sizes.split(",")],
        members=[m for m in a.members.split(",") if m],
        workdir=Path(a.workdir),
        train_rows=a.train_rows,
        throughput_rows=a.throughput_rows,
        overrides=a.override,
        token_cache=not a.no_token_cache,
        chunk=a.chunk_size,
        fill_cache=a.fill_cache,
    )
    command = "python bench/scale.py" + ("" if not argv else " " + " ".join(argv))
    text = render_section(summary, command)
    print(text)
    if not a.no_doc:
        from sentiloop.benchmark.report import replace_section

        replace_section(a.doc, a.section, text, heading=a.heading or "Scale and speed: all 712,383 NSMC reviews")
    return 0


def render_section(summary: dict, command: str) -> str:
    tp = summary["throughput"]
    fits = ", ".join(f"{m}: {v['n_train']:,} rows, {v['seconds']:.0f} s" for m, v in summary["fit"].items())
    lines = [
        f"Measured {summary['started']} on {summary['machine']}; load average before/after "
        f"{summary['load_before']} / {summary.get('load_after')} (shared machine: other jobs were running).",
        "",
        "```",
        command,
        "```",
        "",
        f"Corpus `data=nsmc3` (3 classes, every raw review kept); members: {', '.join(summary['members'])}, "
        f"fitted once on a seeded sample ({fits}) "
        f"and used as iteration 0's models. Each stage runs in its own process, as under `dvc repro`; "
        f"peak RSS is that process's VmHWM. Chunk size {summary['chunk_size']:,}. Token cache: "
        f"{'on' if summary['token_cache'] else 'off (every stage tokenizes with Kiwi)'}.",
        "",
    ]
    fill = summary.get("fill")
    if summary["token_cache"] and fill:
        lines += [
            f"The corpus was tokenized once into the token cache before the stages ran: "
            f"{fill['tokenized']:,} of {fill['texts']:,} texts tokenized (the rest were cache hits: duplicate "
            f"texts, or texts cached by an earlier, interrupted fill; {fill['distinct']:,} distinct) in "
            f"{fill['seconds']:.0f} s = {fill['per_s']:,.0f} texts/s, peak {fill['peak_rss_mb']:.0f} MiB "
            f"(finished {fill['finished']}). This is the one Kiwi pass a run pays; the stages below read tokens "
            f"from the cache.",
            "",
        ]
    sizes = list(summary["sizes"].items())
    header = "| Stage | " + " | ".join(f"{int(s):,} rows: wall s | peak MiB" for s, _ in sizes) + " |"
    lines += [header, "|---|" + "---:|---:|" * len(sizes)]
    for stage in [st for st in STAGES if any(st in rec["stages"] for _, rec in sizes)]:
        cells = []
        for _, rec in sizes:
            st = rec["stages"].get(stage, {"wall_s": float("nan"), "peak_rss_mb": float("nan")})
            cells += [f"{st['wall_s']:.1f}", f"{st['peak_rss_mb']:.0f}"]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    peaks = [rec["peak_rss_mb"] for _, rec in sizes]
    lines.append("| **peak over stages** | " + " | ".join(f"– | **{p:.0f}**" for p in peaks) + " |")
    if len(peaks) >= 2:
        lines += [
            "",
            f"Peak memory ratio {int(sizes[-1][0]):,} / {int(sizes[0][0]):,} rows: "
            f"**{peaks[-1] / peaks[0]:.2f}** (target <= 1.3); peak at the largest size "
            f"**{peaks[-1]:.0f} MiB** (target <= 1,536 MiB).",
        ]
    lines += [
        "",
        f"Throughput ({tp['n']:,} NSMC sentences, one process):",
        "",
        f"- Kiwi tokenization: **{tp['kiwi_tokenize_per_s']:,.0f} sentences/s**",
    ]
    for m, v in tp["members"].items():
        parts = []
        if "score_tokens_per_s" in v:
            parts.append(f"scoring pre-tokenized text {v['score_tokens_per_s']:,.0f}/s")
        parts.append(f"predict_proba with the token cache warm **{v['predict_cached_per_s']:,.0f}/s**")
        if "predict_uncached_per_s" in v:
            parts.append(f"predict_proba on unseen text (Kiwi tokenizes) {v['predict_uncached_per_s']:,.0f}/s")
        lines.append(f"- {m}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
