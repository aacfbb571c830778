"""Bundle, batch prediction and the HTTP API, on a real lexicon member."""

from __future__ import annotations

import http.client
import io
import json
import socket
import sqlite3
import threading

import numpy as np
import pandas as pd
import pytest

import ops_support as S
from sentiloop.bundle import Bundle, BundleError, build_bundle
from sentiloop.cli import main
from sentiloop.serve import Limits, PredictionService, make_server, predict_file


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    rows = S.corpus(30)
    model = S.fit_lexicon(rows)
    model.save(root / "models/lexicon")
    (root / "models/lexicon/folds").mkdir()  # cross-fitting folds never ship
    build_bundle(
        root / "bundle",
        member_dirs={"lexicon": root / "models/lexicon"},
        weights={"lexicon": 0.15, "bert": 0.3},
        classes=S.CLASSES,
        language="en",
        gate={"passed": True, "deployable": True, "f1": 0.9, "threshold": 0.75},
        metrics={"test_macro_f1": 0.9},
        params={"seed": 7},
        data_files=[S.write_store(root / "final.sqlite", rows)],
    )
    return root / "bundle"


TEXTS = ["i love this wonderful day", "awful rude service, i hate it", "the meeting is on monday", ""]


def test_bundle_manifest_and_predictions(bundle_dir):
    b = Bundle.load(bundle_dir)
    m = b.manifest
    assert m["classes"] == S.CLASSES and m["language"] == "en"
    assert m["weights"] == {"lexicon": 1.0}  # restricted to the members present, normalised
    assert m["gate"]["deployable"] is True and m["params"] == {"seed": 7}
    assert set(m["packages"]) >= {"python", "numpy", "sentiloop"}
    assert len(next(iter(m["data"].values()))["sha256"]) == 64 and m["created_at"]
    assert "members/lexicon/model.json" in m["files"] and not (bundle_dir / "members/lexicon/folds").exists()
    assert json.loads((bundle_dir / "tokenizer.json").read_text())["language"] == "en"
    p = b.predict_proba(TEXTS)
    assert p.shape == (4, 3) and np.allclose(p.sum(axis=1), 1)
    member = b.members["lexicon"].predict_proba(TEXTS)
    assert np.allclose(p, member)
    labels, _ = b.predict(TEXTS[:3])
    assert labels == ["positive", "negative", "neutral"]


def test_bundle_refuses_tampering_and_non_bundles(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    with open(copy / "members/lexicon/dictionary.tsv", "a") as fh:
        fh.write("sneaky\t9\t9\t9\t1\t1\t1\n")
    with pytest.raises(BundleError, match="sha256"):
        Bundle.load(copy)
    with pytest.raises(BundleError, match="manifest"):
        Bundle.load(tmp_path)


def test_build_bundle_refuses_mismatched_classes(bundle_dir, tmp_path):
    with pytest.raises(BundleError, match="classes"):
        build_bundle(
            tmp_path / "x",
            member_dirs={"lexicon": bundle_dir / "members/lexicon"},
            weights=None,
            classes=["negative", "positive"],
            language="en",
        )
    assert not (tmp_path / "x").exists()


def test_predict_file_streams_csv_parquet_sqlite(bundle_dir, tmp_path):
    b = Bundle.load(bundle_dir)
    texts = TEXTS * 5
    src = pd.DataFrame({"review": texts, "key": [f"k{i}" for i in range(len(texts))]})
    src.to_csv(tmp_path / "in.csv", index=False)
    n = predict_file(
        b, tmp_path / "in.csv", tmp_path / "out.parquet", text_column="review", id_column="key", chunk_size=3
    )
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert n == len(texts) == len(out)
    assert out["id"].tolist() == src["key"].tolist()
    expected = b.predict_proba(texts)
    assert np.allclose(out[[f"p_{c}" for c in S.CLASSES]].to_numpy(), expected)
    assert out["label"].tolist() == [S.CLASSES[i] for i in expected.argmax(axis=1)]

    src.to_parquet(tmp_path / "in.parquet")
    predict_file(b, tmp_path / "in.parquet", tmp_path / "out.csv", text_column="review", chunk_size=4)
    assert pd.read_csv(tmp_path / "out.csv")["label"].tolist() == out["label"].tolist()

    con = sqlite3.connect(tmp_path / "in.sqlite")
    con.execute("CREATE TABLE docs (doc TEXT)")
    con.executemany("INSERT INTO docs VALUES (?)", [(t,) for t in texts])
    con.commit()
    con.close()
    predict_file(b, tmp_path / "in.sqlite", tmp_path / "out2.csv", text_column="doc", table="docs", chunk_size=7)
    assert pd.read_csv(tmp_path / "out2.csv")["label"].tolist() == out["label"].tolist()

    with pytest.raises(ValueError, match="no column 'text'"):
        predict_file(b, tmp_path / "in.csv", tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()  # nothing half-written


def test_cli_predict_file_and_stdin(bundle_dir, tmp_path, monkeypatch, capsys):
    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    assert (
        main(
            [
                "predict",
                "--bundle",
                str(bundle_dir),
                "-i",
                str(tmp_path / "in.csv"),
                "-o",
                str(tmp_path / "out.csv"),
                "--keep-text",
            ]
        )
        == 0
    )
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out.columns.tolist()[:3] == ["id", "text", "label"] and len(out) == 4
    monkeypatch.setattr("sys.stdin", io.StringIO("i love it\n\nawful, i hate it\n"))
    assert main(["predict", "--bundle", str(bundle_dir)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["label"] for x in lines] == ["positive", "negative"]
    assert set(lines[0]["probabilities"]) == set(S.CLASSES)
    # a missing bundle is a clear error, not a traceback
    assert main(["predict", "--bundle", str(tmp_path / "nope"), "-i", str(tmp_path / "in.csv")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


@pytest.fixture
def server(bundle_dir):
    service = PredictionService(Bundle.load(bundle_dir), Limits(max_body_bytes=4096, max_batch=8, max_text_chars=200))
    srv = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], service
    srv.shutdown()
    srv.server_close()


def _request(port, method, path, body=None, headers=None):
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    con.request(method, path, body=body, headers=headers or {})
    resp = con.getresponse()
    data = resp.read()
    con.close()
    return resp.status, json.loads(data) if data else None


def _raw(port, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)  # the client sends nothing more
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_serve_answers_predict_health_version(server, bundle_dir):
    port, service = server
    status, body = _request(port, "GET", "/health")
    assert status == 200 and body["status"] == "ok"
    status, body = _request(port, "GET", "/version")
    assert status == 200 and body["members"] == {"lexicon": "lexicon"} and body["gate"]["deployable"]
    status, body = _request(
        port, "POST", "/predict", json.dumps({"text": TEXTS[0]}), {"Content-Type": "application/json"}
    )
    assert status == 200 and body["prediction"]["label"] == "positive"
    status, body = _request(port, "POST", "/predict", json.dumps({"texts": TEXTS}))
    assert status == 200 and len(body["predictions"]) == 4
    expected = service.bundle.predict_proba(TEXTS)
    got = np.array([[p["probabilities"][c] for c in S.CLASSES] for p in body["predictions"]])
    assert np.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    "body,headers,status,message",
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (b"\xff\xfe\x00", {}, 400, "UTF-8"),
        (b'["a"]', {}, 400, "JSON object"),
        (b"{}", {}, 400, "exactly one of"),
        (b'{"text": "a", "texts": ["b"]}', {}, 400, "exactly one of"),
        (b'{"text": 5}', {}, 400, "must be a string"),
        (b'{"texts": "abc"}', {}, 400, "must be a list"),
        (b'{"texts": []}', {}, 400, "is empty"),
        (b'{"texts": ["a", null]}', {}, 400, '"texts"[1] must be a string'),
        (b'{"text": "a", "extra": 1}', {}, 400, "unknown field"),
        (json.dumps({"texts": ["a"] * 9}).encode(), {}, 413, "limit is 8"),
        (json.dumps({"text": "a" * 201}).encode(), {}, 413, "limit is 200"),
        (b'{"text": "' + b"a" * 5000 + b'"}', {}, 413, "limit is 4096"),
        (b'{"text": "a"}', {"Content-Type": "text/plain"}, 415, "application/json"),
    ],
)
def test_serve_rejects_malformed_requests_and_keeps_running(server, body, headers, status, message):
    port, service = server
    got, reply = _request(port, "POST", "/predict", body, headers)
    assert got == status
    assert message in reply["error"]["message"] and reply["error"]["status"] == status
    assert _request(port, "GET", "/health")[0] == 200


def test_serve_survives_protocol_garbage(server):
    port, service = server
    assert _request(port, "GET", "/nowhere")[0] == 404
    assert _request(port, "POST", "/version", b"{}")[0] == 404
    assert _request(port, "DELETE", "/predict")[0] == 405
    assert _request(port, "GET", "/predict")[0] == 405
    reply = _raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 411") and b"Content-Length is required" in reply
    reply = _raw(port, b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"text"')
    assert b" 400 " in reply.split(b"\r\n")[0] and b"shorter than Content-Length" in reply
    reply = _raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n")
    assert b" 400 " in reply.split(b"\r\n")[0]
    _raw(port, b"\x16\x03\x01 garbage that is not http\r\n\r\n")
    status, body = _request(port, "GET", "/health")
    assert status == 200 and body["counts"]["client_errors"] >= 7 and body["counts"]["server_errors"] == 0
    assert _request(port, "POST", "/predict", b'{"text": "love it"}')[0] == 200


def test_a_stalled_client_gets_408_and_frees_its_thread(bundle_dir):
    service = PredictionService(Bundle.load(bundle_dir), Limits(read_timeout=0.5))
    srv = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"te')
            reply = s.recv(4096)  # the client keeps the socket open and sends nothing more
        assert reply.startswith(b"HTTP/1.1 408")
        assert _request(port, "GET", "/health")[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()
