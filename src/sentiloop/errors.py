"""The one base class of the errors a user can act on, and how entry points report them.

A `SentiloopError` is a user's problem (a bad parameter, a missing or malformed file, a model
used wrongly): its message is one line saying what is wrong, with which file or key, and what to
do. Entry points (the `sentiloop` CLI and every stage script) print that line and exit non-zero;
a traceback would only bury it. Anything else is a bug in sentiloop and keeps its traceback.
`--debug` (CLI) or `SENTILOOP_DEBUG=1` (stages, CLI) shows the traceback of user errors too.

Module-specific errors (StoreError, ModelError, CorrectionError, ...) derive from this class and,
where they always did, from ValueError/RuntimeError as well, so existing `except` clauses hold.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

DEBUG_ENV = "SENTILOOP_DEBUG"

T = TypeVar("T")


class SentiloopError(Exception):
    """An error the user can fix; str(e) is one line: what, where (file or key), what to do."""


class SettingsError(SentiloopError, ValueError):
    """A parameter is missing, unknown, out of range, or part of a combination that cannot work."""


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(e: BaseException) -> str:
    """The message as one line (a multi-line message keeps its first line and says so)."""
    text = str(e).strip() or type(e).__name__
    lines = text.splitlines()
    return lines[0] if len(lines) == 1 else f"{lines[0]} (+{len(lines) - 1} more line(s); {DEBUG_ENV}=1 shows all)"


def run_reporting(fn: Callable[[], T], *, prog: str, debug: bool | None = None) -> T:
    """Run `fn`; on a SentiloopError print `<prog>: error: <one line>` to stderr and exit 2
    (with the traceback when debugging)."""
    debug = debug_enabled() if debug is None else debug
    try:
        return fn()
    except SentiloopError as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
