"""Figures render Hangul: every figure function, fed Korean words and class names, draws without
a single missing-glyph warning (warnings are errors here), with the bundled font only."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sentiloop import report
from sentiloop.fonts import FONT_NAME, cjk_font_path, use_cjk_font

CLASSES = ["부정", "중립", "긍정"]


@pytest.fixture
def glyph_warnings_are_errors():
    import matplotlib

    saved = matplotlib.rcParams.copy()
    matplotlib.rcdefaults()  # as in a fresh process: DejaVu Sans, no Hangul
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
    matplotlib.rcParams.update(saved)


def test_the_font_comes_from_a_package_not_the_system():
    path = cjk_font_path()
    assert path.suffix == ".ttf" and path.stat().st_size > 1_000_000
    assert "site-packages" in path.parts or "dist-packages" in path.parts


def test_without_the_helper_hangul_is_missing_glyphs(glyph_warnings_are_errors):
    """The failure this guards against is real: DejaVu Sans has no Hangul."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title("긍정")
    try:
        with pytest.raises(UserWarning, match="missing from font"):
            fig.canvas.draw()
    finally:
        plt.close(fig)


def test_report_figures_render_hangul(tmp_path, glyph_warnings_are_errors):
    words = {
        "긍정": [("재밌다", 2.1), ("최고", 1.7), ("감동", 1.2)],
        "부정": [("지루하다", 2.4), ("최악", 2.0), ("ㅡㅡ", 0.9)],
    }
    paths = [
        report.plot_lexicon(words, tmp_path / "lexicon.png"),
        report.plot_confusions(
            {"앙상블": np.array([[5, 1, 0], [1, 4, 1], [0, 2, 6]])}, CLASSES, tmp_path / "confusion.png"
        ),
        report.plot_distribution(
            {0: {"부정": 10, "중립": 5, "긍정": 12}, 1: {"부정": 9, "중립": 6, "긍정": 12}},
            CLASSES,
            tmp_path / "distribution.png",
        ),
        report.plot_accuracy(
            {"앙상블": {0: 0.71, 1: 0.74}, "어휘": {0: 0.6, 1: -0.05}}, "accuracy", tmp_path / "accuracy.png"
        ),
    ]
    for p in paths:
        assert p is not None and report.is_png(p)


def test_use_cjk_font_is_idempotent_and_survives_an_rc_reset():
    import matplotlib

    assert use_cjk_font() == FONT_NAME
    matplotlib.rcdefaults()
    assert use_cjk_font() == FONT_NAME
    assert matplotlib.rcParams["font.family"][0] == FONT_NAME
    assert matplotlib.rcParams["font.family"].count(FONT_NAME) == 1
