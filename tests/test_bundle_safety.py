"""A bundle loads only its own files, each matching the manifest; errors name the file."""

from __future__ import annotations

import json
import shutil

import pytest

import ops_support as S
from sentiloop import store
from sentiloop.bundle import Bundle, BundleError, build_bundle
from sentiloop.cli import main


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    model = S.fit_lexicon(S.corpus(30))
    model.save(root / "models/lexicon")
    build_bundle(
        root / "bundle",
        member_dirs={"lexicon": root / "models/lexicon"},
        weights=None,
        classes=S.CLASSES,
        language="en",
        gate={"passed": True, "deployable": True},
    )
    return root / "bundle"


def copy(bundle_dir, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle_dir, dst)
    return dst


def edit_manifest(b, fn):
    m = json.loads((b / "manifest.json").read_text())
    fn(m)
    (b / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("verify", [True, False])
def test_a_member_path_outside_the_bundle_is_refused(bundle_dir, tmp_path, verify):
    b = copy(bundle_dir, tmp_path)
    evil = tmp_path / "evil" / "lexicon"
    shutil.copytree(b / "members/lexicon", evil)
    with open(evil / "dictionary.tsv", "a") as fh:
        fh.write("sneaky\t9\t9\t9\t1\t1\t1\n")
    edit_manifest(b, lambda m: m["members"]["lexicon"].update(path="../evil/lexicon"))
    with pytest.raises(
        BundleError, match=r"member 'lexicon' has path '\.\./evil/lexicon', which is not inside the bundle"
    ):
        Bundle.load(b, verify=verify)


def test_a_symlink_out_of_the_bundle_is_refused(bundle_dir, tmp_path):
    b = copy(bundle_dir, tmp_path)
    outside = tmp_path / "dictionary.tsv"
    shutil.move(b / "members/lexicon/dictionary.tsv", outside)
    (b / "members/lexicon/dictionary.tsv").symlink_to(outside)
    with pytest.raises(BundleError, match="dictionary.tsv points outside the bundle"):
        Bundle.load(b)


def test_a_file_the_manifest_does_not_list_is_refused(bundle_dir, tmp_path):
    b = copy(bundle_dir, tmp_path)
    (b / "members/lexicon/extra.json").write_text("{}")
    with pytest.raises(BundleError, match="members/lexicon/extra.json is not in the manifest"):
        Bundle.load(b)
    edit_manifest(b, lambda m: m["files"].update({"../outside": "0" * 64}))
    with pytest.raises(BundleError, match="lists '../outside', which is not inside the bundle"):
        Bundle.load(b)


def test_no_verify_names_the_corrupt_file(bundle_dir, tmp_path, capsys):
    b = copy(bundle_dir, tmp_path)
    (b / "members/lexicon/model.json").write_text('{"kind": "lexicon", "classes": [')
    with pytest.raises(BundleError, match="members/lexicon/model.json does not match the manifest"):
        Bundle.load(b, verify=False)
    assert main(["predict", "--bundle", str(b), "--no-verify", "--input", str(tmp_path / "none.csv")]) == 2
    assert "members/lexicon/model.json" in capsys.readouterr().err


def test_the_intact_bundle_still_loads_with_and_without_verification(bundle_dir):
    for verify in (True, False):
        assert Bundle.load(bundle_dir, verify=verify).predict(["i love it"])[0] == ["positive"]


def test_a_truncated_store_names_its_file(tmp_path):
    path = S.write_store(tmp_path / "s.sqlite", S.corpus(400))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(store.StoreError, match=r"s\.sqlite: not a readable SQLite database"):
        list(store.iter_chunks(path, ["id"]))
    with pytest.raises(store.StoreError, match=r"s\.sqlite"):
        store.count(path)
    with pytest.raises(store.StoreError, match=r"s\.sqlite"):
        with store.atomic_db(tmp_path / "out.sqlite", copy_from=path) as con:
            con.execute("SELECT COUNT(*) FROM sentences").fetchone()
    assert not (tmp_path / "out.sqlite").exists()
    (tmp_path / "junk.sqlite").write_bytes(b"x" * 4096)
    with pytest.raises(store.StoreError, match=r"junk\.sqlite"):
        store.connect(tmp_path / "junk.sqlite", readonly=True)


@pytest.fixture(scope="module")
def refused_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("refused")
    S.fit_lexicon(S.corpus(30)).save(root / "lexicon")
    build_bundle(
        root / "bundle",
        member_dirs={"lexicon": root / "lexicon"},
        weights=None,
        classes=S.CLASSES,
        language="en",
        gate={"passed": False, "deployable": False, "f1": 0.4},
    )
    return root / "bundle"


def test_predict_says_when_the_bundle_is_not_deployable_or_the_language_differs(
    bundle_dir, refused_bundle, tmp_path, capsys, monkeypatch
):
    import io

    import pandas as pd

    texts = ["i love this wonderful day", "정말 최고의 영화였어요", "12345", "awful rude service"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    assert (
        main(["predict", "--bundle", str(bundle_dir), "-i", str(tmp_path / "in.csv"), "-o", str(tmp_path / "ok.csv")])
        == 0
    )
    ok = pd.read_csv(tmp_path / "ok.csv", keep_default_na=False)
    assert ok["warnings"].tolist() == ["", "language_mismatch", "", ""]
    err = capsys.readouterr().err
    assert "1 of 4 text(s) are not in the bundle's language (en)" in err and "not deployable" not in err

    assert (
        main(
            [
                "predict",
                "--bundle",
                str(refused_bundle),
                "-i",
                str(tmp_path / "in.csv"),
                "-o",
                str(tmp_path / "refused.parquet"),
            ]
        )
        == 0
    )
    out = pd.read_parquet(tmp_path / "refused.parquet")
    assert out["warnings"].tolist() == [
        "not_deployable",
        "not_deployable;language_mismatch",
        "not_deployable",
        "not_deployable",
    ]
    assert "is not deployable" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO("i love it\n최악이다\n"))
    assert main(["predict", "--bundle", str(refused_bundle)]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    assert [x["warnings"] for x in lines] == [["not_deployable"], ["not_deployable", "language_mismatch"]]
    assert "not deployable" in captured.err and "1 of 2 text(s)" in captured.err


def test_serve_marks_doubtful_predictions(refused_bundle):
    import http.client
    import threading

    from sentiloop.serve import PredictionService, make_server

    srv = make_server(PredictionService(Bundle.load(refused_bundle)), port=0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
        c.request(
            "POST", "/predict", json.dumps({"texts": ["good day", "좋은 날"]}), {"Content-Type": "application/json"}
        )
        body = json.loads(c.getresponse().read())
    finally:
        srv.shutdown()
        srv.server_close()
    assert [p["warnings"] for p in body["predictions"]] == [["not_deployable"], ["not_deployable", "language_mismatch"]]


def test_predict_input_with_a_stray_quote_loses_no_row(bundle_dir, tmp_path, capsys):
    import pandas as pd

    lines = (
        ["id,text"]
        + [f"{i},i love it {i}" for i in range(1, 6)]
        + ['6,"a stray quote here']
        + [f"{i},awful rude service {i}" for i in range(7, 11)]
        + ["11,too,many,fields", '12,"two\nlines, one row"']
    )
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    assert (
        main(
            [
                "predict",
                "--bundle",
                str(bundle_dir),
                "-i",
                str(tmp_path / "in.csv"),
                "--id-column",
                "id",
                "-o",
                str(tmp_path / "out.csv"),
            ]
        )
        == 0
    )
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, dtype=str)
    assert len(out) == 12
    bad = out[out["warnings"] == "malformed_row"]
    assert bad["id"].tolist() == ["5", "10"] and (bad["label"] == "").all()  # data row numbers
    good = out[out["warnings"] == ""]
    assert good["id"].tolist() == [str(i) for i in range(1, 11) if i != 6] + ["12"]
    assert set(good["label"]) <= set(S.CLASSES) and good.set_index("id").loc["7", "label"] == "negative"
    assert "2 of 12 input row(s) are malformed" in capsys.readouterr().err


def test_text_script_is_the_script_of_most_letters():
    from sentiloop.bundle import text_script

    assert text_script("정말 최고의 movie 였어요") == "hangul"
    assert text_script("what a great day, 최고") == "latin"
    assert text_script("café naïve") == "latin"
    assert text_script("Отличный фильм") == "other"
    assert text_script("12345 !!! 😀") is None
