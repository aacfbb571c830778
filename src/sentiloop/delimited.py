"""Delimited text (CSV with RFC 4180 quoting, TSV without quoting), read line-robustly.

Shared by ingest (the corpus) and feedback (review files). Lines end at LF or CRLF only, so a
bare CR is text and line numbers are what an editor shows. A quoted CSV field may span lines;
a stray quote costs its own line (one malformed record), never the rest of the file, and
there is no field-size limit (an oversized field is the caller's to judge).
"""

from __future__ import annotations

import re
from typing import Iterator

# A quoted CSV field may span lines, but never more than this many characters: past it the
# opening quote is taken as stray, its line is one malformed row, and reading resumes on the next
# line (so a stray quote costs one row, never the rest of the file).
MAX_RECORD_CHARS = 1 << 20


def physical_lines(fh) -> Iterator[tuple[str, str, bool]]:
    """(line, its terminator, some byte was not UTF-8) per physical line: lines end at LF or
    CRLF only, so a bare CR is text."""
    for raw in fh:
        eol = b"\r\n" if raw.endswith(b"\r\n") else b"\n" if raw.endswith(b"\n") else b""
        raw = raw[: len(raw) - len(eol)]
        try:
            yield raw.decode("utf-8"), eol.decode(), False
        except UnicodeDecodeError:
            yield raw.decode("utf-8", errors="replace"), eol.decode(), True


# a quoted field: quotes inside doubled; its closing quote is not followed by another quote
_QUOTED = re.compile(r'"([^"]*(?:""[^"]*)*)"(?!")')


def split_csv(s: str, d: str) -> list[str] | None | bool:
    """Fields of one record (RFC 4180: a field starting with a quote is quoted, its quotes doubled,
    and its closing quote is followed by the delimiter or the end; elsewhere a quote is text).
    None: a quoted field is not closed by the end of `s`; False: text after a closing quote."""
    fields: list[str] = []
    pos, n = 0, len(s)
    while True:
        if pos < n and s[pos] == '"':
            m = _QUOTED.match(s, pos)
            if m is None:
                return None
            fields.append(m.group(1).replace('""', '"'))
            pos = m.end()
            if pos == n:
                return fields
            if s[pos] != d:
                return False
        else:
            j = s.find(d, pos)
            if j < 0:
                fields.append(s[pos:])
                return fields
            fields.append(s[pos:j])
            pos = j
        pos += 1  # past the delimiter
        if pos == n:
            fields.append("")
            return fields


class Records:
    """The records of a delimited file: (fields, or None when malformed; raw text; decode error).
    Blank lines are no record. Without quoting (TSV) a record is one line. With quoting, a record
    whose quoted field is open at the end of its line takes the following lines until it closes;
    if it never closes cleanly (end of file, MAX_RECORD_CHARS, text after the closing quote) or
    the record then has the wrong number of fields (`ncols`, once the header is read), its first
    line alone is one malformed record and the lines after it are read again as records.
    One case stays ambiguous by the CSV grammar itself: a stray quote whose field is closed by a
    later row's opening quote directly followed by a delimiter or a line end (`,",...`), with
    the field count coming out right; it is read the way every CSV reader reads it."""

    def __init__(self, lines: Iterator[tuple[str, str, bool]], delimiter: str, quoting: bool):
        self.lines = ((n, *item) for n, item in enumerate(lines, start=1))
        self.d, self.quoting = delimiter, quoting
        self.pending: list[tuple[int, str, str, bool]] = []
        self.ncols: int | None = None
        self.line_no = 0  # the physical line (1-based) where the last record began

    def _line(self):
        return self.pending.pop() if self.pending else next(self.lines, None)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[list[str] | None, str, bool]:
        d = self.d
        while (item := self._line()) is not None:
            self.line_no, line, _, bad = item
            if not line:
                continue
            if not self.quoting or '"' not in line:
                return line.split(d), line, bad
            fields = split_csv(line, d)
            if fields is not None:
                return (fields or None), line, bad
            taken, size = [item], len(line)  # a quoted field is open: take lines until it closes
            while fields is None and size <= MAX_RECORD_CHARS:
                more = self._line()
                if more is None:
                    break
                taken.append(more)
                size += len(more[1]) + 2
                if '"' in more[1]:
                    fields = split_csv(self._join(taken), d)
            if fields and (self.ncols is None or len(fields) == self.ncols):
                return fields, self._join(taken), any(t[3] for t in taken)
            self.pending.extend(reversed(taken[1:]))
            return None, line, bad
        raise StopIteration

    @staticmethod
    def _join(taken) -> str:
        return "".join(t[1] + t[2] for t in taken[:-1]) + taken[-1][1]


def text_lines(text: str) -> Iterator[tuple[str, str, bool]]:
    """physical_lines for decoded text."""
    parts = text.split("\n")
    for i, line in enumerate(parts):
        if i == len(parts) - 1:
            if line:
                yield line, "", False
            return
        if line.endswith("\r"):
            yield line[:-1], "\r\n", False
        else:
            yield line, "\n", False
