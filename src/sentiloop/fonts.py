"""Figures that render Hangul (and other CJK text) with a font the project installs itself.

Why: matplotlib's bundled DejaVu Sans has no Hangul, so a Korean run's figures (the lexicon's
strongest words, class names, anything a user labels in Korean) come out as empty boxes with a
"Glyph ... missing from font(s)" warning per character, and a machine rarely has a CJK system
font (CI and these VMs have none). The `koreanize-matplotlib` wheel ships NanumGothic (SIL Open
Font License 1.1; the package itself is MIT), so the font comes with `pip install`.

We register the TTF file ourselves instead of `import koreanize_matplotlib`: that module imports
`distutils`, which Python 3.12 removed, and it rewrites rcParams on import as a side effect.

`use_cjk_font()` is idempotent and cheap after the first call; every module that draws figures
(report.py, benchmark/report.py, the web app) calls it before drawing. NanumGothic goes first in
the sans-serif list and DejaVu Sans stays behind it, so matplotlib's per-glyph font fallback
(>= 3.6) still finds symbols NanumGothic lacks.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

FONT_DIST = "koreanize-matplotlib"
FONT_FILE = "koreanize_matplotlib/fonts/NanumGothic.ttf"
FONT_NAME = "NanumGothic"
FALLBACK = "DejaVu Sans"


class FontError(RuntimeError):
    """The bundled CJK font is not installed."""


def cjk_font_path() -> Path:
    """The NanumGothic TTF that the koreanize-matplotlib wheel installs (no import of it)."""
    import importlib.metadata as md

    try:
        path = Path(str(md.distribution(FONT_DIST).locate_file(FONT_FILE)))
    except md.PackageNotFoundError:
        raise FontError(
            f"the CJK font package {FONT_DIST!r} is not installed: `pip install {FONT_DIST}` (a sentiloop dependency)"
        ) from None
    if not path.is_file():
        raise FontError(f"{path}: {FONT_DIST} is installed but has no {Path(FONT_FILE).name}")
    return path


@lru_cache(maxsize=1)
def _register() -> str:
    from matplotlib import font_manager

    path = cjk_font_path()
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def use_cjk_font() -> str:
    """Register the bundled CJK font (once per process) and make it matplotlib's first
    sans-serif; returns its family name. Call before creating figures: rcParams apply to figures
    created afterwards, and the call is repeated cheaply so an rcParams reset is undone."""
    import matplotlib

    name = _register()
    rest = [f for f in matplotlib.rcParams["font.sans-serif"] if f not in (name, FALLBACK)]
    matplotlib.rcParams["font.sans-serif"] = [name, FALLBACK, *rest]
    # explicit families, not the generic "sans-serif": matplotlib's glyph fallback walks the
    # family list, and a generic family resolves to a single font
    matplotlib.rcParams["font.family"] = [name, FALLBACK]
    return name
