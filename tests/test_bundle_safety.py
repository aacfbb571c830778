"""A bundle loads only its own files, each matching the manifest; errors name the file."""
from __future__ import annotations

import json
import shutil
import sqlite3

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
    build_bundle(root / "bundle", member_dirs={"lexicon": root / "models/lexicon"}, weights=None,
                 classes=S.CLASSES, language="en", gate={"passed": True, "deployable": True})
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
    with pytest.raises(BundleError, match=r"member 'lexicon' has path '\.\./evil/lexicon', which is not inside the bundle"):
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
