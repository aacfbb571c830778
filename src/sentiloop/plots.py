"""`make plots` / `python -m sentiloop.plots`: DVC's own plots, viewable offline.

`dvc plots show` and `dvc plots diff` write HTML that loads Vega from a CDN, so with no network
they draw nothing. This asks DVC for the same Vega-Lite specs (`--json`: the curated `plots:` of
dvc.yaml, overlaid across revisions or experiments by `diff`) and renders them with vl-convert
(Vega bundled in the wheel, no network): one PNG per plot, one self-contained HTML per plot
(Vega inlined, interactive), and an index.html that shows the PNGs, all under dvc_plots/
(git-ignored).

    python -m sentiloop.plots                       # dvc plots show
    python -m sentiloop.plots main schedule-linear  # dvc plots diff main schedule-linear
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from sentiloop.errors import SentiloopError


class PlotsError(SentiloopError, RuntimeError):
    pass


def dvc_specs(revs: Sequence[str] = (), cwd: str | Path = ".") -> dict[str, list[dict]]:
    """{plot name: [Vega-Lite spec, ...]} from `dvc plots show|diff --json`."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    cmd = [dvc, "plots", *(["diff", *revs] if revs else ["show"]), "--json"]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise PlotsError(f"`{' '.join(cmd[1:])}` failed: {(res.stderr.strip().splitlines() or ['no output'])[-1]}")
    out = json.loads(res.stdout)
    errors = out.get("errors") or []
    specs = {
        name: [i["content"] for i in items if i.get("type") == "vega"]
        for name, items in (out.get("data") or {}).items()
    }
    if not any(specs.values()):
        detail = "; ".join(e.get("msg", "") for e in errors[:2]) or "no plot data (run `dvc repro` first)"
        raise PlotsError(f"DVC returned no plots: {detail}")
    return specs


def render(specs: dict[str, list[dict]], out_dir: str | Path = "dvc_plots", scale: float = 1.5) -> list[Path]:
    """PNG + self-contained HTML per plot, and index.html; returns the PNG paths."""
    import vl_convert as vlc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    for name, items in specs.items():
        for i, spec in enumerate(items):
            stem = name if len(items) == 1 else f"{name}_{i}"
            stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
            png = out / f"{stem}.png"
            png.write_bytes(vlc.vegalite_to_png(spec, scale=scale))
            (out / f"{stem}.html").write_text(vlc.vegalite_to_html(spec, bundle=True), encoding="utf-8")
            pngs.append(png)
    body = "\n".join(
        f'<h2>{html.escape(p.stem)}</h2><a href="{html.escape(p.stem)}.html">'
        f'<img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}"></a>'
        for p in pngs
    )
    (out / "index.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>sentiloop plots</title><body>{body}</body>\n", encoding="utf-8"
    )
    return pngs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sentiloop.plots", description=__doc__.split("\n")[0])
    ap.add_argument("revs", nargs="*", help="revisions / experiment names to overlay (dvc plots diff); none: show")
    ap.add_argument("-o", "--out", default="dvc_plots")
    args = ap.parse_args(argv)
    from sentiloop.errors import run_reporting

    def go():
        pngs = render(dvc_specs(args.revs), args.out)
        print(f"wrote {len(pngs)} plot(s) to {args.out}/ (index.html, *.png, *.html: no network needed)")
        return 0

    return int(run_reporting(go, prog="plots") or 0)


if __name__ == "__main__":
    sys.exit(main())
