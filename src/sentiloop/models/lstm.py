"""LSTM member (Keras 3): Embedding -> LSTM -> Dropout -> Dense softmax.

Keras 3 runs on TensorFlow by default (`tensorflow-cpu`) and on PyTorch with
KERAS_BACKEND=torch; the backend is fixed when keras is first imported, so it is chosen by the
environment, not by this module. Weights are saved as a Keras `.weights.h5` file and the network
is rebuilt from the config on load, which is what lets a model trained under one backend load
under the other.

Retraining strategies (config `strategy`, seed 001):
  finetune  continue from the previous iteration's weights (layer by layer, by name and shape),
            Adam with exponential decay (1e-2, x0.96 every 100 steps), he_normal initialisation
            for layers that are new (not in the previous model), dropout 0.3, early stopping on
            dev loss with the best weights restored.
  scratch   a freshly initialised network every iteration (same vocabulary and schedule).
Input ids are pre-padded (vocab.encode(padding="pre")) so the LSTM's final state follows the
real tokens without a mask.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sentiloop.models._training import check_texts, check_xy, cpu_threads, epoch_bar, epoch_done
from sentiloop.models.base import ModelError, SentimentModel
from sentiloop.models.vocab import Vocabulary, vocabulary_for

STRATEGIES = ("finetune", "scratch")
WEIGHTS_FILE = "lstm.weights.h5"


# What TensorFlow's C++ side prints while `import tensorflow` runs. Since TF 2.20 it logs through
# absl, which ignores TF_CPP_MIN_LOG_LEVEL until absl::InitializeLog() (that TF never calls), so
# every process that loads the LSTM member printed these four lines (twice).
TF_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
)


@contextlib.contextmanager
def _stderr_without(noise: Sequence[str]):
    """Capture file descriptor 2 (C++ writes there directly) and pass on every line that does
    not contain one of `noise`. No-op when fd 2 cannot be duplicated."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [
                line
                for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not any(n in line for n in noise)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _import_tensorflow():
    """`import tensorflow` without its start-up noise (real warnings and errors still show)."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's own (non-absl) INFO/WARNING lines
        with _stderr_without(TF_STARTUP_NOISE):
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]


def _keras(config: dict[str, Any]):
    """Import keras with this process's thread limit applied to its backend."""
    n = cpu_threads(config)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        tf = _import_tensorflow()
        try:  # only possible before TF's runtime starts; later calls keep the first setting
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:
            pass
    elif backend == "torch":
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    import keras

    return keras


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


def _build_net(vocab_size: int, n_classes: int, cfg: dict[str, Any]):
    keras = _keras(cfg)
    from keras import layers

    inp = keras.Input(shape=(int(cfg["max_len"]),), dtype="int32", name="ids")
    x = layers.Embedding(vocab_size, int(cfg["embedding_dim"]), name="embedding")(inp)
    x = layers.LSTM(int(cfg["units"]), name="lstm")(x)
    x = layers.Dropout(float(cfg["dropout"]), name="dropout")(x)
    out = layers.Dense(n_classes, activation="softmax", kernel_initializer="he_normal", name="output")(x)
    return keras.Model(inp, out, name="sentiloop_lstm")


def _transfer(src, dst) -> tuple[list[str], list[str]]:
    """Copy weights layer by layer where name and shapes match; return (copied, new)."""
    src_layers = {l.name: l for l in src.layers}
    copied, new = [], []
    for layer in dst.layers:
        w = layer.get_weights()
        if not w:
            continue
        old = src_layers.get(layer.name)
        ow = old.get_weights() if old is not None else None
        if ow is not None and [a.shape for a in ow] == [a.shape for a in w]:
            layer.set_weights(ow)
            copied.append(layer.name)
        else:
            new.append(layer.name)  # keeps its fresh (he_normal for dense) initialisation
    return copied, new


class LSTMModel(SentimentModel):
    kind = "lstm"

    def __init__(self, classes, config=None, *, language="en", seed=0):
        super().__init__(classes, config, language=language, seed=seed)
        if self.config["strategy"] not in STRATEGIES:
            raise ModelError(f"lstm strategy must be one of {STRATEGIES}, got {self.config['strategy']!r}")
        self.vocab: Vocabulary | None = None
        self.net = None
        self.backend_: str | None = None

    def fit(self, texts, labels, *, init_from=None, eval_set=None):
        texts = check_texts(texts)
        y = check_xy(texts, labels, self.n_classes)
        cfg = self.config
        keras = _keras(cfg)
        keras.utils.set_random_seed(self.seed)
        if init_from is not None:
            if not isinstance(init_from, LSTMModel) or init_from.net is None:
                raise ModelError("lstm init_from must be a fitted LSTMModel")
            if init_from.classes != self.classes:
                raise ModelError(f"init_from classes {init_from.classes} != {self.classes}")
        finetune = init_from is not None and cfg["strategy"] == "finetune"
        self.vocab, vocab_source = vocabulary_for(
            cfg, texts, self.language, init_from.vocab if init_from is not None else None
        )
        cfg["max_len"] = self.vocab.max_len  # the input width follows the (fixed) vocabulary

        self.net = _build_net(len(self.vocab), self.n_classes, cfg)
        copied, new = _transfer(init_from.net, self.net) if finetune else ([], [])
        self.strategy_ = "finetune" if finetune else ("scratch" if init_from is not None else "initial")
        schedule = keras.optimizers.schedules.ExponentialDecay(
            float(cfg["learning_rate"]),
            decay_steps=int(cfg["decay_steps"]),
            decay_rate=float(cfg["decay_rate"]),
            staircase=True,
        )
        self.net.compile(
            optimizer=keras.optimizers.Adam(learning_rate=schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        x = self.vocab.encode(texts, padding="pre")
        callbacks, val = [], None
        if eval_set is not None:
            dev_texts = check_texts(eval_set[0])
            dy = check_xy(dev_texts, eval_set[1], self.n_classes)
            val = (self.vocab.encode(dev_texts, padding="pre"), dy)
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=int(cfg["patience"]), restore_best_weights=True
                )
            )
        progress = epoch_bar("lstm", cfg["epochs"])
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda _epoch, logs: epoch_done(
                    progress, {"train_loss": (logs or {}).get("loss"), "dev_loss": (logs or {}).get("val_loss")}
                )
            )
        )
        try:
            hist = self.net.fit(
                x,
                y,
                batch_size=int(cfg["batch_size"]),
                epochs=int(cfg["epochs"]),
                validation_data=val,
                callbacks=callbacks,
                shuffle=True,
                verbose=0,
            )
        finally:
            progress.close()
        h = hist.history
        steps_per_epoch = -(-len(texts) // int(cfg["batch_size"]))
        self.history_ = []
        for e in range(len(h["loss"])):
            step = (e + 1) * steps_per_epoch
            rec = {
                "epoch": e,
                "train_loss": float(h["loss"][e]),
                "lr_end": float(schedule(step)),
                "transferred": copied,
                "new_layers": new,
                "vocab": vocab_source,
            }
            if "val_loss" in h:
                rec["dev_loss"] = float(h["val_loss"][e])
                rec["dev_accuracy"] = float(h["val_accuracy"][e])
            self.history_.append(rec)
        if val is not None:
            best = int(np.argmin(h["val_loss"]))
            self.history_.append({"restored_best_epoch": best})
        self.backend_ = keras_backend()
        self.n_train_samples_ = len(texts)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted(self.net is not None)
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.n_classes))
        x = self.vocab.encode(texts, padding="pre")
        # predict_on_batch per slice, not predict(): predict() builds a data pipeline on every
        # call (~150 ms), which dominates the latency of serving a handful of texts
        step = int(self.config["predict_batch_size"])
        p = np.concatenate(
            [np.asarray(self.net.predict_on_batch(x[i : i + step]), dtype=np.float64) for i in range(0, len(x), step)]
        )
        return p / p.sum(axis=1, keepdims=True)

    def _extra_meta(self):
        return {"backend": self.backend_}

    def _save_weights(self, directory: Path) -> None:
        self._check_fitted(self.net is not None)
        self.vocab.save(directory)
        self.net.save_weights(str(directory / WEIGHTS_FILE))

    def _load_weights(self, directory: Path, extra: dict[str, Any]) -> None:
        keras = _keras(self.config)
        self.vocab = Vocabulary.load(directory)
        self.config["max_len"] = self.vocab.max_len
        self.net = _build_net(len(self.vocab), self.n_classes, self.config)
        self.net.load_weights(str(directory / WEIGHTS_FILE))
        self.backend_ = keras.backend.backend()
