"""A reviewer's decisions in the review app: one feedback file per reviewer session, rewritten
atomically on every decision, in the format `feedback.load_feedback` reads.

    data/feedback/app-<reviewer>-<session>.csv      id,label,reviewer,action

- one file per session (the reviewer's name and a random session id in its name): two reviewers,
  or two tabs of one reviewer, never write the same file, so nobody overwrites anybody;
- every decision rewrites the whole file (a temporary file in the same directory, fsync, then
  `os.replace`): a reader (the correct stage, `sentiloop review check`) sees the old file or the
  new one, never half a row;
- the session id travels in the page's URL, so a reload reopens the same file and its decisions;
- a later decision on the same id replaces the earlier one (one row per id: a reviewer who
  changes their mind never produces a conflict with themselves); `skip` writes an empty label,
  which load_feedback counts as "not reviewed".
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Sequence

from sentiloop.errors import SentiloopError

COLUMNS = ["id", "label", "reviewer", "action"]
ACTIONS = ("accept", "choose", "skip")
PREFIX = "app-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$")
_SESSION = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$")


class ReviewSessionError(SentiloopError, ValueError):
    """A decision or a session that cannot be recorded."""


def new_session_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def check_reviewer(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise ReviewSessionError(
            f"reviewer name {name!r}: use 1-40 letters, digits, spaces, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


class ReviewSession:
    """The decisions of one reviewer session, mirrored in its feedback file."""

    def __init__(self, directory: str | Path, reviewer: str, classes: Sequence[str], session_id: str | None = None):
        self.reviewer = check_reviewer(reviewer)
        self.session_id = session_id or new_session_id()
        if not _SESSION.match(self.session_id):
            raise ReviewSessionError(
                f"session id {self.session_id!r} is malformed (expected YYYYMMDDTHHMMSS-xxxxxx, as the app writes it)"
            )
        self.classes = list(classes)
        self.directory = Path(directory)
        slug = re.sub(r"[^A-Za-z0-9._-]", "_", self.reviewer)
        self.path = self.directory / f"{PREFIX}{slug}-{self.session_id}.csv"
        self.decisions: dict[str, tuple[str, str]] = {}  # id -> (label or "", action)
        if self.path.exists():
            self._reload()

    def _reload(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise ReviewSessionError(
                f"{self.path}: cannot reopen this session's file ({e}); start a new session"
            ) from None
        for r in rows:
            if not r.get("id") or r.get("action") not in ACTIONS:
                raise ReviewSessionError(f"{self.path}: not a review-app session file (row {r}); start a new session")
            self.decisions[r["id"]] = (r.get("label") or "", r["action"])

    def decide(self, rid: str, action: str, label: str | None = None) -> None:
        """Record a decision and write the file before returning."""
        rid = str(rid).strip()
        if not rid:
            raise ReviewSessionError("a decision needs a row id")
        if action not in ACTIONS:
            raise ReviewSessionError(f"unknown action {action!r}; one of {list(ACTIONS)}")
        if action == "skip":
            label = ""
        elif label not in self.classes:
            raise ReviewSessionError(f"label {label!r} for id {rid}: not one of the classes {self.classes}")
        previous = self.decisions.get(rid)
        self.decisions.pop(rid, None)  # re-decided rows move to the end, in decision order
        self.decisions[rid] = (label or "", action)
        try:
            self._write()
        except OSError as e:
            if previous is None:
                self.decisions.pop(rid, None)
            else:
                self.decisions[rid] = previous
            raise ReviewSessionError(f"{self.path}: could not save the decision ({e}); nothing was written") from None

    def content(self) -> str:
        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for rid, (label, action) in self.decisions.items():
            w.writerow([rid, label, self.reviewer, action])
        return buf.getvalue()

    def _write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(self.content())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @property
    def decided(self) -> set[str]:
        return set(self.decisions)
