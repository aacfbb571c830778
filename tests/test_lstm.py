"""LSTM member under Keras 3: TensorFlow in-process (the default backend), PyTorch in a
subprocess (the backend is fixed when keras is first imported)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neural_corpus import CLASSES, split
from sentiloop.errors import SentiloopError
from sentiloop.models.base import ModelError, build_model, load_model
from sentiloop.settings import member_config

FAST = member_config(
    "lstm",
    **{
        "threads": 1,
        "epochs": 3,
        "batch_size": 32,
        "embedding_dim": 16,
        "units": 16,
        "min_count": 1,
        "max_len": 12,
        "patience": 5,
    },
)  # conf/'s defaults, made small
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    return split()


@pytest.fixture(scope="module")
def fitted(data):
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("in-process tests are for the TensorFlow backend")
    (tx, ty), dev = data
    return build_model("lstm", CLASSES, FAST, seed=1).fit(tx, ty, eval_set=dev)


def test_fits_on_tensorflow_and_predicts_probabilities(fitted, data):
    (tx, ty), (dx, dy) = data
    assert fitted.backend_ == "tensorflow"
    p = fitted.predict_proba(dx)
    assert p.shape == (len(dx), 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert (p.argmax(1) == dy).mean() > 0.6
    assert fitted.strategy_ == "initial"
    assert fitted.net.get_layer("output").kernel_initializer.__class__.__name__ == "HeNormal"


def test_save_load_gives_identical_predictions(fitted, data, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    texts = data[1][0] + ["", "unseen words here"]
    np.testing.assert_allclose(loaded.predict_proba(texts), fitted.predict_proba(texts), atol=1e-7)


def test_finetune_continues_from_previous_weights(fitted, data):
    (tx, ty), dev = data
    m = build_model("lstm", CLASSES, {**FAST, "epochs": 1, "learning_rate": 1e-9}, seed=5)
    m.fit(tx, ty, init_from=fitted, eval_set=dev)
    assert m.strategy_ == "finetune" and m.vocab == fitted.vocab
    assert m.history_[0]["transferred"] == ["embedding", "lstm", "output"]
    # with a vanishing learning rate the continued model predicts like the previous one
    np.testing.assert_allclose(m.predict_proba(dev[0]), fitted.predict_proba(dev[0]), atol=1e-4)


def test_finetune_gives_new_layers_fresh_he_normal_weights(fitted, data):
    (tx, ty), _ = data
    m = build_model("lstm", CLASSES, {**FAST, "epochs": 1, "units": 8}, seed=5)
    m.fit(tx, ty, init_from=fitted)
    assert m.history_[0]["transferred"] == ["embedding"]
    assert m.history_[0]["new_layers"] == ["lstm", "output"]


def test_learning_rate_decays_exponentially_per_step(data):
    (tx, ty), _ = data
    cfg = {**FAST, "epochs": 2, "batch_size": 60, "decay_steps": 2, "decay_rate": 0.5, "learning_rate": 0.01}
    m = build_model("lstm", CLASSES, cfg).fit(tx, ty)  # 3 steps per epoch
    assert [h["lr_end"] for h in m.history_] == pytest.approx([0.01 * 0.5**1, 0.01 * 0.5**3])


def test_scratch_ignores_previous_weights(fitted, data):
    (tx, ty), _ = data
    m = build_model("lstm", CLASSES, {**FAST, "strategy": "scratch", "epochs": 1}).fit(tx, ty, init_from=fitted)
    assert m.strategy_ == "scratch" and m.history_[0]["transferred"] == []
    assert m.vocab == fitted.vocab


def test_bad_input_fails_clearly(fitted, data):
    (tx, ty), _ = data
    with pytest.raises(SentiloopError, match="models.lstm.strategy = 'nope': must be one of"):
        build_model("lstm", CLASSES, {**FAST, "strategy": "nope"})
    with pytest.raises(ModelError, match="texts but"):
        build_model("lstm", CLASSES, FAST).fit(tx, ty[:-1])
    with pytest.raises(ModelError, match="init_from"):
        build_model("lstm", CLASSES, FAST).fit(tx, ty, init_from=object())


_TORCH_SCRIPT = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import numpy as np
from neural_corpus import CLASSES, split
from sentiloop.models.base import build_model, load_model
cfg = json.loads(sys.argv[3]); out = sys.argv[4]
(tx, ty), dev = split()
m = build_model("lstm", CLASSES, cfg, seed=1).fit(tx, ty, eval_set=dev)
m2 = build_model("lstm", CLASSES, {**cfg, "epochs": 1}).fit(tx, ty, init_from=m)
m.save(out + "/torch_model")
loaded = load_model(out + "/torch_model")
p = m.predict_proba(dev[0])
other = load_model(sys.argv[5]).predict_proba(dev[0]).tolist() if len(sys.argv) > 5 else None
import keras
print(json.dumps({"backend": keras.backend.backend(), "model_backend": m.backend_,
                  "acc": float((p.argmax(1) == dev[1]).mean()), "sums": p.sum(1).tolist(),
                  "same_after_load": bool(np.allclose(loaded.predict_proba(dev[0]), p, atol=1e-6)),
                  "finetune": m2.strategy_, "transferred": m2.history_[0]["transferred"],
                  "tf_model_under_torch": other}))
"""


@pytest.mark.slow  # ~30 s (a fresh process imports torch and keras): the alternative backend, run by .ci/run
def test_lstm_runs_under_the_torch_backend(fitted, data, tmp_path):
    fitted.save(tmp_path / "tf_model")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            _TORCH_SCRIPT,
            str(ROOT / "src"),
            str(ROOT / "tests"),
            json.dumps(FAST),
            str(tmp_path),
            str(tmp_path / "tf_model"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["backend"] == res["model_backend"] == "torch"
    assert res["acc"] > 0.6
    np.testing.assert_allclose(res["sums"], 1.0, atol=1e-6)
    assert res["same_after_load"]
    assert res["finetune"] == "finetune" and res["transferred"] == ["embedding", "lstm", "output"]
    # weights saved under TensorFlow load and predict the same under PyTorch
    np.testing.assert_allclose(res["tf_model_under_torch"], fitted.predict_proba(data[1][0]), atol=1e-5)
