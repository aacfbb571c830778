"""Inference over a bundle: batch files in chunks, and a small JSON HTTP API.

The HTTP server is the standard library's ThreadingHTTPServer: no new dependency, one thread
per connection, and every request is validated before it reaches the model, so a bad request
costs a 4xx and the server keeps running. Limits (body bytes, texts per request, characters per
text) bound what one request can cost.

  POST /predict   {"text": "..."} or {"texts": ["...", ...]}
                  -> {"predictions": [{"label", "probabilities": {class: p}}], "model": {...}}
  GET  /health    -> {"status": "ok"}
  GET  /version   -> the bundle's identity (created_at, members, weights, gate, data hash)
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

import numpy as np
import pandas as pd

from sentiloop.bundle import LANGUAGE_MISMATCH, NOT_DEPLOYABLE, Bundle
from sentiloop.delimited import Records, physical_lines
from sentiloop.errors import SentiloopError

log = logging.getLogger(__name__)


@dataclass
class Limits:
    max_body_bytes: int = 1 << 20  # 1 MiB
    max_batch: int = 256  # texts per request
    max_text_chars: int = 5000  # characters per text
    read_timeout: float = 10.0  # seconds a client may take to send its request


class RequestError(ValueError):
    """A client error, with the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_predict_body(body: bytes, limits: Limits) -> tuple[list[str], bool]:
    """Validate a /predict body; returns (texts, single) or raises RequestError."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "body is not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"body is not valid JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(payload, dict):
        raise RequestError(400, 'body must be a JSON object: {"text": "..."} or {"texts": [...]}')
    has_text, has_texts = "text" in payload, "texts" in payload
    if has_text == has_texts:
        raise RequestError(400, 'give exactly one of "text" (a string) or "texts" (a list of strings)')
    unknown = sorted(set(payload) - {"text", "texts"})
    if unknown:
        raise RequestError(400, f"unknown field(s): {unknown}")
    single = has_text
    texts = [payload["text"]] if single else payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(400, '"texts" must be a list of strings')
    if not texts:
        raise RequestError(400, '"texts" is empty')
    if len(texts) > limits.max_batch:
        raise RequestError(413, f"{len(texts)} texts in one request; the limit is {limits.max_batch}")
    for i, t in enumerate(texts):
        where = '"text"' if single else f'"texts"[{i}]'
        if not isinstance(t, str):
            raise RequestError(400, f"{where} must be a string, got {type(t).__name__}")
        if len(t) > limits.max_text_chars:
            raise RequestError(413, f"{where} has {len(t)} characters; the limit is {limits.max_text_chars}")
    return texts, single


def predictions_json(classes: Sequence[str], proba: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for row in proba:
        out.append(
            {
                "label": classes[int(np.argmax(row))],
                "probabilities": {c: round(float(p), 6) for c, p in zip(classes, row)},
            }
        )
    return out


class PredictionService:
    """The bundle plus what the handler needs; predictions are serialised by a lock because
    not every member's framework promises thread-safe inference."""

    def __init__(self, bundle: Bundle, limits: Limits | None = None, *, label: str | None = None):
        self.bundle = bundle
        self.limits = limits or Limits()
        self.label = label
        self.started = time.time()
        self._lock = threading.Lock()
        self.counts = {"requests": 0, "predictions": 0, "client_errors": 0, "server_errors": 0}
        self._count_lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self.counts[key] += n

    def predict(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.bundle.predict_proba(texts)

    def version(self) -> dict[str, Any]:
        info = self.bundle.info()
        if self.label:
            info["registry"] = self.label
        return info


class _Handler(BaseHTTPRequestHandler):
    server_version = "sentiloop"
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux) on every keep-alive request
    disable_nagle_algorithm = True
    service: PredictionService  # set on the subclass made by make_server

    # --- plumbing -------------------------------------------------------------------
    def log_message(self, fmt: str, *args) -> None:  # route to logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the stdlib detects itself (bad request line, oversized headers): JSON too."""
        self.close_connection = True
        self.service.count("client_errors" if code < 500 else "server_errors")
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send(code, {"error": {"status": code, "message": message or phrase}})

    def _error(self, status: int, message: str) -> None:
        self.service.count("client_errors" if status < 500 else "server_errors")
        # a body we did not read would be parsed as the next request: close instead
        self.close_connection = True
        self._send(status, {"error": {"status": status, "message": message}})

    def _guarded(self, fn) -> None:
        self.service.count("requests")
        try:
            fn()
        except RequestError as e:
            self._error(e.status, e.message)
        except TimeoutError:
            self._error(408, "timed out reading the request")
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True  # the client left; nobody to answer
        except Exception as e:  # the server must outlive any single request
            log.exception("unhandled error serving %s %s", self.command, self.path)
            self._error(500, f"internal error: {type(e).__name__}")

    # --- routes ---------------------------------------------------------------------
    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _not_allowed(self) -> None:
        raise RequestError(405, f"method {self.command} not allowed; use GET /health, GET /version or POST /predict")

    def _other(self) -> None:
        self._guarded(self._not_allowed)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _other

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send(
                200,
                {
                    "status": "ok",
                    "uptime_s": round(time.time() - self.service.started, 1),
                    "counts": dict(self.service.counts),
                },
            )
        elif path == "/version":
            self._send(200, self.service.version())
        elif path == "/predict":
            raise RequestError(405, "use POST /predict with a JSON body")
        else:
            raise RequestError(404, f"no route {path}; try POST /predict, GET /health, GET /version")

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/predict":
            raise RequestError(404, f"no route POST {path}; try POST /predict")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype and ctype != "application/json":
            raise RequestError(415, f"Content-Type must be application/json, got {ctype}")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise RequestError(411, "chunked bodies are not accepted; send Content-Length")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise RequestError(411, "Content-Length is required")
        try:
            length = int(length_header)
        except ValueError:
            raise RequestError(400, f"bad Content-Length {length_header!r}") from None
        if length < 0:
            raise RequestError(400, f"bad Content-Length {length}")
        limits = self.service.limits
        if length > limits.max_body_bytes:
            raise RequestError(413, f"body of {length} bytes; the limit is {limits.max_body_bytes}")
        body = self.rfile.read(length)
        if len(body) < length:
            raise RequestError(400, "body shorter than Content-Length")
        texts, single = parse_predict_body(body, limits)
        proba = self.service.predict(texts)
        preds = predictions_json(self.service.bundle.classes, proba)
        for pred, w in zip(preds, self.service.bundle.warnings(texts)):
            if w:
                pred["warnings"] = w
        self.service.count("predictions", len(preds))
        payload: dict[str, Any] = {"predictions": preds}
        if single:
            payload["prediction"] = preds[0]
        self._send(200, payload)


def make_server(service: PredictionService, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    # StreamRequestHandler.timeout bounds every read: a client that stops sending mid-body
    # costs one thread for read_timeout seconds, not forever
    handler = type("Handler", (_Handler,), {"service": service, "timeout": service.limits.read_timeout})
    server = _Server((host, port), handler)
    return server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # the listen backlog: socketserver's default of 5 drops the SYNs of a burst of new
    # connections, which clients see as resets and 1/2/3 s retransmit stalls
    request_queue_size = 1024


def serve_forever(service: PredictionService, host: str, port: int) -> None:
    server = make_server(service, host, port)
    h, p = server.server_address[:2]
    print(
        f"sentiloop: serving {len(service.bundle.members)} member(s) on http://{h}:{p} "
        "(POST /predict, GET /health, GET /version)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- batch prediction -------------------------------------------------------------------


class InputError(SentiloopError, ValueError):
    """A batch-prediction input or output the CLI cannot use (format, column, table)."""


INPUT_FORMATS = ("csv", "tsv", "parquet", "sqlite")


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt and fmt != "auto":
        if fmt not in INPUT_FORMATS:
            raise InputError(f"unknown format {fmt!r}; one of {INPUT_FORMATS}")
        return fmt
    suffix = Path(path).suffix.lower()
    mapping = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".sqlite": "sqlite",
        ".db": "sqlite",
        ".sqlite3": "sqlite",
    }
    if suffix not in mapping:
        raise InputError(f"cannot tell the format of {path} from its suffix; pass --format")
    return mapping[suffix]


def iter_input(
    path: str | Path,
    *,
    fmt: str | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    table: str = "sentences",
    chunk_size: int = 1000,
) -> Iterator[pd.DataFrame]:
    """Yield DataFrames of at most `chunk_size` rows with columns `id` and `text`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = detect_format(path, fmt)
    start = 0

    def shape(df: pd.DataFrame) -> pd.DataFrame:
        nonlocal start
        if text_column not in df.columns:
            raise InputError(f"{path}: no column {text_column!r} (columns: {list(df.columns)}); pass --text-column")
        if id_column and id_column not in df.columns:
            raise InputError(f"{path}: no id column {id_column!r}")
        ids = df[id_column].astype(str) if id_column else pd.Series(range(start, start + len(df))).astype(str)
        start += len(df)
        texts = df[text_column].fillna("").astype(str)
        return pd.DataFrame({"id": ids.to_numpy(), "text": texts.to_numpy()})

    if fmt in ("csv", "tsv"):
        yield from _iter_delimited(path, "\t" if fmt == "tsv" else ",", text_column, id_column, chunk_size)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=chunk_size):
            yield shape(batch.to_pandas())
    else:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({_quote(table)})")]
            if not cols:
                raise InputError(f"{path}: no table {table!r}; pass --table")
            wanted = [text_column] + ([id_column] if id_column else [])
            missing = [c for c in wanted if c not in cols]
            if missing:
                raise InputError(f"{path}: table {table!r} has no column(s) {missing} (columns: {cols})")
            cur = con.execute(f"SELECT {', '.join(_quote(c) for c in wanted)} FROM {_quote(table)} ORDER BY rowid")
            while rows := cur.fetchmany(chunk_size):
                yield shape(pd.DataFrame.from_records(rows, columns=wanted))
        finally:
            con.close()


def _iter_delimited(
    path: Path, delimiter: str, text_column: str, id_column: str | None, chunk_size: int
) -> Iterator[pd.DataFrame]:
    """CSV/TSV input through sentiloop.delimited, like ingest: a row with an unclosed quote or the
    wrong number of fields is kept as a row flagged `malformed` (its raw line as text), never
    swallowing the rows after it; the id of a row without one is its data row number (0-based)."""
    with open(path, "rb") as fh:
        records = Records(physical_lines(fh), delimiter, quoting=delimiter == ",")
        first = next(records, None)
        if first is None:
            raise InputError(f"{path}: empty file, no header line")
        header = [h.strip().lstrip("\ufeff") for h in (first[0] or first[1].split(delimiter))]
        if text_column not in header:
            raise InputError(f"{path}: no column {text_column!r} (columns: {header}); pass --text-column")
        if id_column and id_column not in header:
            raise InputError(f"{path}: no id column {id_column!r}")
        records.ncols = len(header)
        ti, ii = header.index(text_column), header.index(id_column) if id_column else None
        ids, texts, bad, n = [], [], [], 0
        for fields, raw, _ in records:
            ok = fields is not None and len(fields) == len(header)
            ids.append(fields[ii] if ok and ii is not None else str(n))
            texts.append(fields[ti] if ok else raw)
            bad.append(not ok)
            n += 1
            if len(ids) >= chunk_size:
                yield pd.DataFrame({"id": ids, "text": texts, "malformed": bad})
                ids, texts, bad = [], [], []
        if ids:
            yield pd.DataFrame({"id": ids, "text": texts, "malformed": bad})


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def predict_frame(bundle: Bundle, chunk: pd.DataFrame) -> pd.DataFrame:
    """Predictions for a chunk of (id, text[, malformed]); a malformed input row gets no label,
    NaN probabilities and the warning `malformed_row`."""
    bad = chunk["malformed"].to_numpy(bool) if "malformed" in chunk else np.zeros(len(chunk), bool)
    texts = chunk["text"].tolist()
    good = [t for t, b in zip(texts, bad) if not b]
    _, p_good = bundle.predict(good) if good else ([], np.zeros((0, len(bundle.classes))))
    proba = np.full((len(texts), len(bundle.classes)), np.nan)
    proba[~bad] = p_good
    labels = [bundle.classes[int(np.argmax(p))] if not b else "" for p, b in zip(proba, bad)]
    out = pd.DataFrame(
        {"id": chunk["id"].to_numpy(), "label": labels, "confidence": proba.max(axis=1) if len(proba) else []}
    )
    for j, c in enumerate(bundle.classes):
        out[f"p_{c}"] = proba[:, j] if len(proba) else []
    warn = bundle.warnings(texts)
    out["warnings"] = [MALFORMED_ROW if b else ";".join(w) for w, b in zip(warn, bad)]
    return out


MALFORMED_ROW = "malformed_row"


class WarningTally:
    """Counts the rows predicted with each warning, and says so once on stderr at the end."""

    def __init__(self, bundle: Bundle):
        self.bundle, self.counts, self.rows = bundle, Counter(), 0

    def add(self, warnings: Sequence[Sequence[str]]) -> None:
        self.rows += len(warnings)
        for w in warnings:
            self.counts.update(w)

    def report(self, err: TextIO | None = None) -> None:
        err = err or sys.stderr
        b = self.bundle
        if self.counts.get(NOT_DEPLOYABLE):
            print(
                f"sentiloop: warning: bundle {b.directory} is not deployable (the quality gate "
                f"refused it: {json.dumps(b.gate, sort_keys=True, default=str)}); every row says "
                f"{NOT_DEPLOYABLE}",
                file=err,
            )
        n = self.counts.get(MALFORMED_ROW, 0)
        if n:
            print(
                f"sentiloop: warning: {n} of {self.rows} input row(s) are malformed (a quote never "
                f"closed, or not as many fields as the header): no label, warnings = {MALFORMED_ROW}",
                file=err,
            )
        n = self.counts.get(LANGUAGE_MISMATCH, 0)
        if n:
            print(
                f"sentiloop: warning: {n} of {self.rows} text(s) are not in the bundle's language "
                f"({b.manifest.get('language')}): their rows say {LANGUAGE_MISMATCH}",
                file=err,
            )


def predict_file(
    bundle: Bundle,
    src: str | Path,
    dst: str | Path | None,
    *,
    fmt: str | None = None,
    out_format: str | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    table: str = "sentences",
    chunk_size: int = 1000,
    keep_text: bool = False,
    stdout: TextIO | None = None,
) -> int:
    """Stream `src` through the bundle chunk by chunk into `dst` (CSV or Parquet; CSV to stdout
    when dst is None). Returns the number of rows predicted. Memory is bounded by chunk_size."""
    writer = None
    n = 0
    out_fmt = None
    tmp = None
    tally = WarningTally(bundle)
    if dst is not None:
        out_fmt = out_format or ("parquet" if Path(dst).suffix.lower() in (".parquet", ".pq") else "csv")
        if out_fmt not in ("csv", "parquet"):
            raise InputError(f"output format must be csv or parquet, got {out_fmt!r}")
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(dst) + ".tmp")
    fh = None
    try:
        for chunk in iter_input(
            src, fmt=fmt, text_column=text_column, id_column=id_column, table=table, chunk_size=chunk_size
        ):
            out = predict_frame(bundle, chunk)
            tally.add([w.split(";") if w else [] for w in out["warnings"]])
            if keep_text:
                out.insert(1, "text", chunk["text"].to_numpy())
            if dst is None:
                out.to_csv(stdout or sys.stdout, index=False, header=(n == 0))
            elif out_fmt == "csv":
                if fh is None:
                    fh = open(tmp, "w", newline="", encoding="utf-8")
                out.to_csv(fh, index=False, header=(n == 0))
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table_ = pa.Table.from_pandas(out, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table_.schema)
                writer.write_table(table_)
            n += len(out)
        if fh is not None:
            fh.close()
            fh = None
        if writer is not None:
            writer.close()
            writer = None
        if tmp is not None:
            if n == 0:  # still write a file with the header, so downstream tools see the schema
                empty = pd.DataFrame(
                    columns=["id", "label", "confidence"] + [f"p_{c}" for c in bundle.classes] + ["warnings"]
                )
                if out_fmt == "csv":
                    empty.to_csv(tmp, index=False)
                else:
                    empty.astype({c: "float64" for c in empty.columns if c.startswith("p_")}).to_parquet(tmp)
            tmp.replace(dst)
        tally.report()
    finally:
        if fh is not None:
            fh.close()
        if writer is not None:
            writer.close()
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return n


def predict_lines(bundle: Bundle, lines: TextIO, out: TextIO, chunk_size: int = 256) -> int:
    """One text per input line -> one JSON object per output line, in chunks."""
    n = 0
    buf: list[str] = []
    tally = WarningTally(bundle)

    def flush() -> None:
        nonlocal n
        if not buf:
            return
        proba = bundle.predict_proba(buf)
        warnings = bundle.warnings(buf)
        tally.add(warnings)
        for text, pred, w in zip(buf, predictions_json(bundle.classes, proba), warnings):
            out.write(json.dumps({"text": text, **pred, "warnings": w}, ensure_ascii=False) + "\n")
        n += len(buf)
        buf.clear()
        out.flush()

    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        buf.append(line)
        if len(buf) >= chunk_size:
            flush()
    flush()
    tally.report()
    return n
