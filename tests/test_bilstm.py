import numpy as np
import pytest
import torch

from neural_corpus import CLASSES, split
from sentiloop.models.base import ModelError, build_model, load_model
from sentiloop.models.bilstm import BiLSTMModel
from sentiloop.settings import member_config

FAST = member_config(
    "bilstm",
    **{
        "threads": 1,
        "epochs": 3,
        "batch_size": 32,
        "embedding_dim": 16,
        "hidden_size": 16,
        "dense_size": 16,
        "min_count": 1,
        "max_len": 12,
        "patience": 5,
        "learning_rate": 0.01,
    },
)  # conf/'s defaults, made small


@pytest.fixture(scope="module")
def data():
    return split()


@pytest.fixture(scope="module")
def fitted(data):
    (tx, ty), dev = data
    return build_model("bilstm", CLASSES, FAST, seed=1).fit(tx, ty, eval_set=dev)


def test_fits_and_predicts_probabilities(fitted, data):
    (tx, ty), (dx, dy) = data
    p = fitted.predict_proba(dx)
    assert p.shape == (len(dx), 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert (p.argmax(1) == dy).mean() > 0.6  # chance is 1/3
    assert fitted.strategy_ == "initial" and fitted.n_train_samples_ == len(tx)
    assert [h["epoch"] for h in fitted.history_ if "epoch" in h] == [0, 1, 2]
    assert "dev_loss" in fitted.history_[0]


def test_stacked_bidirectional_architecture(fitted):
    assert len(fitted.net.lstms) == 2 and all(l.bidirectional for l in fitted.net.lstms)


def test_save_load_gives_identical_predictions(fitted, data, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, BiLSTMModel)
    texts = data[1][0] + ["", "completely unseen words"]
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))
    assert (tmp_path / "m" / "vocab.json").exists()


def test_finetune_freezes_embeddings_and_keeps_vocabulary(fitted, data):
    (tx, ty), dev = data
    before = {k: v.clone() for k, v in fitted.net.state_dict().items()}
    new_texts = [t + " brandnewword" for t in tx]  # a new word must not grow the vocabulary
    m = BiLSTMModel(CLASSES, {**FAST, "strategy": "finetune"}, seed=2).fit(
        new_texts, ty, init_from=fitted, eval_set=dev
    )
    assert m.strategy_ == "finetune"
    assert m.vocab == fitted.vocab and "brandnewword" not in m.vocab.index
    assert torch.equal(m.net.embedding.weight, before["embedding.weight"])
    assert not torch.equal(m.net.out.weight, before["out.weight"])
    assert all(h["frozen"] == ["embedding"] for h in m.history_ if "epoch" in h)
    # init_from itself is untouched
    assert torch.equal(fitted.net.out.weight, before["out.weight"])


def test_scratch_retrains_everything(fitted, data):
    (tx, ty), dev = data
    m = BiLSTMModel(CLASSES, {**FAST, "strategy": "scratch"}, seed=2).fit(tx, ty, init_from=fitted)
    assert m.strategy_ == "scratch"
    assert m.vocab == fitted.vocab
    assert not torch.equal(m.net.embedding.weight, fitted.net.embedding.weight)
    assert all(h["frozen"] == [] for h in m.history_)


def test_early_stopping_restores_best_epoch(data):
    (tx, ty), dev = data
    m = BiLSTMModel(CLASSES, {**FAST, "epochs": 6, "patience": 1, "learning_rate": 0.05}).fit(tx, ty, eval_set=dev)
    epochs = [h for h in m.history_ if "epoch" in h]
    best = m.history_[-1]["restored_best_epoch"]
    assert epochs[best]["dev_loss"] == min(h["dev_loss"] for h in epochs)


def test_bad_input_fails_clearly(data):
    (tx, ty), _ = data
    with pytest.raises(ModelError, match="strategy"):
        BiLSTMModel(CLASSES, {"strategy": "magic"})
    with pytest.raises(ModelError, match="labels must be in"):
        BiLSTMModel(CLASSES, FAST).fit(tx, ty + 3)
    with pytest.raises(ModelError, match="not fitted"):
        BiLSTMModel(CLASSES, FAST).predict_proba(["x"])
    with pytest.raises(ModelError, match="device"):
        if torch.cuda.is_available():
            pytest.skip("has CUDA")
        BiLSTMModel(CLASSES, {**FAST, "device": "cuda"}).fit(tx, ty)
