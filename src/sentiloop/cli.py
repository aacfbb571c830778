"""`sentiloop` command line: predict, serve, registry, review.

    sentiloop predict --bundle models/bundle --input tweets.csv --output preds.parquet
    echo "what a great day" | sentiloop predict --stage prod
    sentiloop serve --stage prod --port 8000
    sentiloop registry promote --stage staging      # refuses a commit whose gate failed
    sentiloop registry rollback --stage prod [--to v0.0.2]
    sentiloop registry show
    sentiloop review export --iteration 3 -n 200 --output review.csv
    sentiloop review export --label-studio tasks.json    # and Label Studio tasks (pre-annotated)
    sentiloop review import export.json -o data/feedback/ls.csv   # their annotations as feedback
    sentiloop review check                           # validate data/feedback/ before committing
    sentiloop report --experiments                   # convergence of every `dvc exp` run
    sentiloop app [--port 8501]                      # the review and dashboard web app (127.0.0.1)
    sentiloop review-report --base main              # reports/review.md for a pull request
    sentiloop daily [--date 2026-01-31]              # seed 002's daily cycle (docs/ops.md)

A bundle is chosen by --bundle DIR, or by --stage/--version from the GTO registry of --repo.
Heavy imports happen inside the commands, so `sentiloop --help` is instant. A user error (bad
file, bad parameter, refused promotion) prints one line and exits 2; --debug shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence


def _bundle_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bundle", help="bundle directory (default: models/bundle)")
    g.add_argument("--stage", help="load the bundle holding this registry stage (dev/staging/prod)")
    g.add_argument("--version", dest="bundle_version", help="load this registered version")
    p.add_argument("--repo", default=".", help="git/DVC repository with the registry (default .)")
    p.add_argument("--no-verify", action="store_true", help="skip the bundle's sha256 check")


def _load_bundle(args):
    from sentiloop.bundle import Bundle

    label = None
    if args.stage or args.bundle_version:
        from sentiloop.registry import resolve_bundle, stage_version

        key = args.stage or args.bundle_version
        directory = resolve_bundle(args.repo, key)
        version = stage_version(args.repo, args.stage) if args.stage else args.bundle_version
        label = {"stage": args.stage, "version": version}
    else:
        from sentiloop.layout import Layout

        directory = Path(args.bundle) if args.bundle else Layout().bundle
    return Bundle.load(directory, verify=not args.no_verify), label


def cmd_predict(args) -> int:
    from sentiloop.serve import predict_file, predict_lines

    bundle, _ = _load_bundle(args)
    if args.input in (None, "-"):
        n = predict_lines(bundle, sys.stdin, sys.stdout, chunk_size=args.chunk_size)
    else:
        n = predict_file(
            bundle,
            args.input,
            args.output,
            fmt=args.format,
            text_column=args.text_column,
            id_column=args.id_column,
            table=args.table,
            chunk_size=args.chunk_size,
            keep_text=args.keep_text,
        )
    print(f"sentiloop: predicted {n} row(s)" + (f" -> {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from sentiloop.serve import Limits, PredictionService, serve_forever

    bundle, label = _load_bundle(args)
    if not bundle.deployable:
        print(
            f"sentiloop: warning: serving bundle {bundle.directory}, which the quality gate marked "
            "not deployable; every prediction says not_deployable",
            file=sys.stderr,
        )
    limits = Limits(max_body_bytes=args.max_body_bytes, max_batch=args.max_batch, max_text_chars=args.max_text_chars)
    serve_forever(PredictionService(bundle, limits, label=label), args.host, args.port)
    return 0


def cmd_registry(args) -> int:
    from sentiloop import registry

    if args.action == "promote":
        out = registry.promote(
            args.repo, args.stage, ref=args.ref, version=args.version_name, bundle_path=args.bundle_path
        )
        gate = out["gate"]
        verb = "assigned" if out["changed"] else "already holds"
        print(
            f"{out['artifact']} {out['version']} ({out['commit'][:12]}) {verb} stage "
            f"{out['stage']}; gate macro-F1 {gate.get('f1')} >= {gate.get('threshold')}"
        )
    elif args.action == "rollback":
        out = registry.rollback(args.repo, args.stage, to=args.to)
        print(f"{out['artifact']} stage {out['stage']}: {out['from']} -> {out['to']}")
    else:
        print(registry.show(args.repo, args.artifact), end="")
    return 0


def _settings(args, need: str):
    """params.yaml's settings, or None when there is none and the command got what it needs
    from its options (`need` names them for the error)."""
    from sentiloop.settings import load

    if Path(args.params).exists():
        return load(args.params)
    if need:
        from sentiloop.errors import SentiloopError

        raise SentiloopError(f"{args.params}: not found: pass {need}, or run where params.yaml is")
    return None


def cmd_review(args) -> int:
    from sentiloop.feedback import export_review
    from sentiloop.layout import Layout

    s = None if args.classes and args.iteration is not None else _settings(args, "--classes and --iteration")
    classes = args.classes or s.classes
    k = args.iteration if args.iteration is not None else s.loop.max_iterations
    L = Layout()
    predictions = args.predictions or L.predictions(k)
    store = args.store or L.store(k)
    out = args.output or f"review_it{k}.csv"
    review = export_review(predictions, store, out, classes=classes, n=args.n)
    print(
        f"sentiloop: wrote {len(review)} row(s) to review to {out}; fill the 'label' column, "
        "then move the file into data/feedback/",
        file=sys.stderr,
    )
    if args.label_studio:
        from sentiloop.feedback import write_label_studio

        tasks = write_label_studio(review, args.label_studio, classes)
        print(
            f"sentiloop: wrote {len(review)} Label Studio task(s) to {tasks} (labeling config: "
            f"{tasks.with_name(tasks.stem + '.config.xml')}); import their JSON export with "
            "`sentiloop review import`",
            file=sys.stderr,
        )
    return 0


def cmd_review_import(args) -> int:
    """A Label Studio JSON export -> a feedback CSV (validated like every feedback file)."""
    from sentiloop.feedback import load_feedback, read_label_studio

    rows = read_label_studio(args.label_studio)
    out = Path(args.output)
    if out.exists() and not args.force:
        from sentiloop.errors import SentiloopError

        raise SentiloopError(f"{out}: exists; choose another --output or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    rows.to_csv(tmp, index=False)
    tmp.replace(out)
    print(f"sentiloop: wrote {len(rows)} annotated row(s) to {out}", file=sys.stderr)
    if args.classes or Path(args.params).exists():
        s = None if args.classes else _settings(args, "")
        acc, rej = load_feedback(out.parent, args.classes or s.classes, args.store)
        mine = rej[rej["file"] == out.name] if len(rej) else rej
        for r in mine.itertuples(index=False):
            print(f"REJECTED {r.file}:{r.line} id={r.id} label={r.label}: {r.reason}")
        return 1 if len(mine) else 0
    return 0


def cmd_review_check(args) -> int:
    """Validate data/feedback/ the way the correct stage will, before committing it."""
    from sentiloop.feedback import feedback_stats, load_feedback

    s = _settings(args, "--classes and --dir" if not (args.classes and args.dir) else "")
    classes = args.classes or s.classes
    directory = args.dir or s.feedback.dir
    splits = tuple(s.feedback.splits) if s is not None else ("train",)
    acc, rej = load_feedback(directory, classes, args.store, allowed_splits=splits)
    for r in rej.itertuples(index=False):
        where = f"{r.file}:{r.line}" if r.line else r.file
        print(f"REJECTED {where} id={r.id} label={r.label}: {r.reason}")
    stats = feedback_stats(acc, rej)
    print(
        f"{stats['accepted']} accepted, {stats['rejected']} rejected, {stats['unreviewed']} not "
        f"reviewed, {stats['duplicates']} duplicate(s) folded, in {stats['files']} file(s)"
    )
    return 1 if len(rej) else 0


def cmd_report(args) -> int:
    from sentiloop.layout import Layout
    from sentiloop.report import collect, experiment_revs, write_report

    s = _settings(args, "--params")
    revs = experiment_revs(".") if args.experiments else {}
    data = collect(s, Layout(), compare_revs=revs, repo=".")
    figures = write_report(data, Path(args.output))
    print(
        f"sentiloop: wrote {args.output} ({len(figures)} figures; {len(revs)} experiment(s) compared)", file=sys.stderr
    )
    return 0


def app_command(root: str | Path, host: str, port: int) -> list[str]:
    """The `streamlit run` command line of the review app."""
    script = Path(__file__).resolve().parent / "app" / "streamlit_app.py"
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]


def cmd_app(args) -> int:
    import os
    import subprocess

    from sentiloop.errors import SentiloopError

    root = Path(args.root).resolve()
    if not (root / args.params).exists():
        raise SentiloopError(f"{root / args.params}: not found; run the app in a sentiloop repository or pass --root")
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise SentiloopError("streamlit is not installed: pip install -e '.[dev]'") from None
    env = {**os.environ, "SENTILOOP_ROOT": str(root)}
    shown = root
    if args.rev:
        from sentiloop.app.logic import materialize_rev

        shown = materialize_rev(root, args.rev)
        env.update(SENTILOOP_ROOT=str(shown), SENTILOOP_FEEDBACK_ROOT=str(root), SENTILOOP_REV=args.rev)
    print(f"sentiloop: review app on http://{args.host}:{args.port} over {shown}", file=sys.stderr)
    return subprocess.call(app_command(root, args.host, args.port), env=env, cwd=root)


def cmd_review_report(args) -> int:
    from sentiloop.review_report import write

    out = write(args.repo, args.base, args.target, args.output)
    print(
        f"sentiloop: wrote {out['output']} ({len(out['figures'])} figure(s)): {args.target} vs {args.base}",
        file=sys.stderr,
    )
    return 0


def cmd_daily(args) -> int:
    from sentiloop.daily import run_daily

    return run_daily(
        args.repo, args.date, incoming=Path(args.incoming), log=lambda m: print(m, file=sys.stderr, flush=True)
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sentiloop", description=__doc__.split("\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="label a CSV/TSV/Parquet/SQLite file, or stdin lines")
    _bundle_args(p)
    p.add_argument("--input", "-i", help="input file; '-' or omitted: one text per stdin line")
    p.add_argument("--output", "-o", help="output .csv or .parquet (default: CSV on stdout)")
    p.add_argument("--format", default="auto", help="csv|tsv|parquet|sqlite (default: suffix)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--id-column", help="carry this column through as `id` (default: row number)")
    p.add_argument("--table", default="sentences", help="SQLite table (default sentences)")
    p.add_argument("--chunk-size", type=int, default=1000)
    p.add_argument("--keep-text", action="store_true", help="copy the text into the output")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="HTTP JSON API: POST /predict, GET /health, GET /version")
    _bundle_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--max-text-chars", type=int, default=5000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("registry", help="GTO registry of the bundle: promote, rollback, show")
    rs = p.add_subparsers(dest="action", required=True)
    for action in ("promote", "rollback", "show"):
        q = rs.add_parser(action)
        q.add_argument("--repo", default=".")
        if action != "show":
            q.add_argument("--stage", required=True, choices=["dev", "staging", "prod"])
        if action == "promote":
            q.add_argument("--ref", default="HEAD", help="commit to register (default HEAD)")
            q.add_argument("--version", dest="version_name", help="e.g. v1.2.0 (default: bump)")
            q.add_argument("--bundle-path", default=registry_bundle_path())
        if action == "rollback":
            q.add_argument("--to", help="version to roll back to (default: the previous holder)")
        if action == "show":
            q.add_argument("artifact", nargs="?")
    p.set_defaults(func=cmd_registry)

    p = sub.add_parser("report", help="the report, with every DVC experiment's convergence curves")
    p.add_argument(
        "--experiments", action="store_true", help="draw each `dvc exp` experiment (refs/exps) next to this run"
    )
    p.add_argument(
        "--output",
        "-o",
        default="reports/experiments.md",
        help="default reports/experiments.md (metrics/report.md belongs to the report stage)",
    )
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("app", help="the review and dashboard web app (Streamlit, 127.0.0.1)")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--root", default=".", help="the repository whose outputs it shows (default .)")
    p.add_argument(
        "--rev",
        help="show the outputs of this git revision or `dvc exp` instead of the "
        "workspace's (read from git and the DVC cache; decisions still go to "
        "the repository's data/feedback)",
    )
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=cmd_app)

    p = sub.add_parser(
        "review-report",
        help="Markdown for a pull request: params/metrics diff, "
        "figures side by side, label changes by source, gate verdict",
    )
    p.add_argument("--base", required=True, help="git revision to compare against (e.g. main, HEAD~1)")
    p.add_argument("--target", default="workspace", help="workspace (default), a git revision, or a `dvc exp` name")
    p.add_argument("--repo", default=".")
    p.add_argument(
        "--output", "-o", default="reports/review.md", help="default reports/review.md (figures in reports/review/)"
    )
    p.set_defaults(func=cmd_review_report)

    p = sub.add_parser(
        "daily",
        help="the daily job: ingest data/incoming/, evaluate prod, retrain "
        "below the gate, alert or promote, the day's report (once per day)",
    )
    p.add_argument("--date", help="the day (YYYY-MM-DD; default today): one run per day")
    p.add_argument("--repo", default=".")
    p.add_argument("--incoming", default="data/incoming", help="where today's files are dropped")
    p.set_defaults(func=cmd_daily)

    p = sub.add_parser("review", help="human review round trip")
    rv = p.add_subparsers(dest="action", required=True)
    q = rv.add_parser("export", help="write the N most uncertain train rows to a review CSV")
    q.add_argument("--iteration", "-k", type=int, help="iteration K (default: the last)")
    q.add_argument("-n", type=int, default=200)
    q.add_argument("--output", "-o")
    q.add_argument("--predictions", help="default data/itK/predictions.parquet")
    q.add_argument("--store", help="default data/itK/sentences.sqlite")
    q.add_argument("--classes", nargs="+")
    q.add_argument("--params", default="params.yaml")
    q.add_argument(
        "--label-studio",
        metavar="TASKS.json",
        help="also write Label Studio tasks (proposed label as a pre-annotation) and "
        "TASKS.config.xml, the labeling interface",
    )
    q.set_defaults(func=cmd_review)
    q = rv.add_parser("import", help="a Label Studio JSON export of the tasks -> a feedback CSV")
    q.add_argument("label_studio", metavar="EXPORT.json")
    q.add_argument("--output", "-o", required=True, help="e.g. data/feedback/labelstudio-2025-01.csv")
    q.add_argument("--force", action="store_true", help="overwrite --output")
    q.add_argument("--store", default=str(_final_store()), help="store to validate the ids against")
    q.add_argument("--classes", nargs="+")
    q.add_argument("--params", default="params.yaml")
    q.set_defaults(func=cmd_review_import)
    q = rv.add_parser("check", help="validate reviewed files (exit 1 when any row is rejected)")
    q.add_argument("--dir", help="default: feedback.dir from params.yaml (data/feedback)")
    q.add_argument("--store", default=str(_final_store()), help="store whose ids and splits the feedback refers to")
    q.add_argument("--classes", nargs="+")
    q.add_argument("--params", default="params.yaml")
    q.set_defaults(func=cmd_review_check)
    return ap


def registry_bundle_path() -> str:
    from sentiloop.layout import Layout

    return Layout().bundle.as_posix()


def _final_store() -> Path:
    from sentiloop.layout import Layout

    return Layout().final_store


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # before a command loads the LSTM member (TensorFlow); models.lstm drops absl's start-up lines
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from sentiloop.errors import SentiloopError, debug_enabled, one_line

    try:
        return int(args.func(args) or 0)
    except (SentiloopError, FileNotFoundError) as e:
        # a user's problem: one line, no traceback (unless --debug / SENTILOOP_DEBUG=1)
        if args.debug or debug_enabled():
            raise
        print(f"sentiloop: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
