"""Progress bars for the long loops (prediction chunks, encoding, training epochs, LLM batches).

tqdm on stderr, shown only when stderr is a terminal (tqdm's `disable=None`): `dvc repro` in a
shell shows them, CI logs, pipes and pytest's captured output stay clean. SENTILOOP_PROGRESS=0
turns them off on a terminal too; SENTILOOP_PROGRESS=1 forces them on (e.g. under `script`).
Bars are transient (`leave=False`): the stage's own summary line is what stays on screen.

tqdm is imported when a bar is made, so importing this module costs nothing.
"""

from __future__ import annotations

import os
from typing import Iterable

PROGRESS_ENV = "SENTILOOP_PROGRESS"
MININTERVAL = 0.5  # seconds between redraws


def _disable() -> bool | None:
    """True (off), False (on) or None (on when stderr is a terminal) from $SENTILOOP_PROGRESS."""
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return True
    if value in ("1", "true", "yes", "on"):
        return False
    return None


def bar(iterable: Iterable | None = None, *, desc: str, total: float | None = None, unit: str = "it", **kwargs):
    """A tqdm bar (use it as an iterable wrapper or as a context manager with `.update(n)`)."""
    from tqdm import tqdm

    kwargs.setdefault("leave", False)
    kwargs.setdefault("mininterval", MININTERVAL)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=_disable(), **kwargs)
