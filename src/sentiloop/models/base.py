"""The one interface every ensemble member implements.

The loop only ever holds `SentimentModel`s: it fits them on (texts, integer labels), asks for
class probabilities, and saves/loads them per iteration. `init_from` carries the previous
iteration's fitted model; each member's retraining strategy (seed 001) lives in how its `fit`
uses it, so the loop never needs to know which member it holds.

On-disk format: every member saves into a directory holding `model.json` (kind, classes,
language, config, fitted attributes) plus its own weight files. `load_model(dir)` dispatches on
`kind`, so a bundle of members can be loaded without knowing what is in it.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from sentiloop.errors import SentiloopError

# kind -> "module:Class"; imported on first use only.
MODEL_KINDS: dict[str, str] = {
    "lexicon": "sentiloop.models.lexicon:LexiconModel",
    "lstm": "sentiloop.models.lstm:LSTMModel",
    "bilstm": "sentiloop.models.bilstm:BiLSTMModel",
    "bert": "sentiloop.models.bert:BertModel",
}

MODEL_FILE = "model.json"


class ModelError(SentiloopError, RuntimeError):
    """A model was used wrongly (not fitted, wrong classes, unreadable directory)."""


class SentimentModel(ABC):
    """A sentiment classifier over a fixed, ordered list of class names.

    Fitted attributes (set by `fit`, saved by `save`), in scikit-learn's style:
      n_train_samples_   rows it was last fitted on
      strategy_          the retraining strategy applied by the last fit ("initial", "blend", ...)
      history_           per-epoch / per-step records of the last fit (list of dicts)
    """

    kind: ClassVar[str]

    def __init__(
        self, classes: Sequence[str], config: dict[str, Any] | None = None, *, language: str = "en", seed: int = 0
    ):
        if len(classes) < 2:
            raise ModelError(f"need at least two classes, got {list(classes)}")
        self.classes = list(classes)
        self.config = dict(config or {})
        self.language = language
        self.seed = int(seed)
        self.n_train_samples_: int | None = None
        self.strategy_: str | None = None
        self.history_: list[dict[str, Any]] = []

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @abstractmethod
    def fit(
        self,
        texts: Sequence[str],
        labels: np.ndarray,
        *,
        init_from: "SentimentModel | None" = None,
        eval_set: tuple[Sequence[str], np.ndarray] | None = None,
    ) -> "SentimentModel":
        """Fit on texts and integer labels (indices into `classes`).

        `init_from`: the previous iteration's model of the same kind; members apply their
        retraining strategy from it. `eval_set`: (texts, labels) for early stopping/calibration.
        """

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, n_classes) float array whose rows sum to 1."""

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.predict_proba(texts)).argmax(axis=1)

    # --- persistence -------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "classes": self.classes,
            "language": self.language,
            "seed": self.seed,
            "config": self.config,
            "n_train_samples_": self.n_train_samples_,
            "strategy_": self.strategy_,
            "history_": self.history_,
            "extra": self._extra_meta(),
        }
        (directory / MODEL_FILE).write_text(json.dumps(meta, indent=1, default=_json_default))
        self._save_weights(directory)

    @classmethod
    def load(cls, directory: str | Path) -> "SentimentModel":
        directory = Path(directory)
        meta = _read_meta(directory)
        if meta["kind"] != cls.kind:
            raise ModelError(f"{directory} holds a {meta['kind']!r} model, not {cls.kind!r}")
        model = cls(meta["classes"], meta["config"], language=meta["language"], seed=meta["seed"])
        model.n_train_samples_ = meta.get("n_train_samples_")
        model.strategy_ = meta.get("strategy_")
        model.history_ = meta.get("history_") or []
        model._load_weights(directory, meta.get("extra") or {})
        return model

    def _extra_meta(self) -> dict[str, Any]:
        """Small fitted state that belongs in model.json rather than a weight file."""
        return {}

    @abstractmethod
    def _save_weights(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_weights(self, directory: Path, extra: dict[str, Any]) -> None: ...

    def _check_fitted(self, fitted: bool) -> None:
        if not fitted:
            raise ModelError(f"{self.kind} model is not fitted: call fit() or load() first")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / MODEL_FILE
    if not path.exists():
        raise ModelError(f"{directory}: no {MODEL_FILE}; is this a saved sentiloop model?")
    return json.loads(path.read_text())


def model_class(kind: str) -> type[SentimentModel]:
    try:
        target = MODEL_KINDS[kind]
    except KeyError:
        raise ModelError(f"unknown model kind {kind!r}; known: {sorted(MODEL_KINDS)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_model(
    kind: str, classes: Sequence[str], config: dict[str, Any], *, language: str = "en", seed: int = 0
) -> SentimentModel:
    """A new, unfitted member. `config` is complete (models.<kind> of the settings, or
    sentiloop.settings.member_config(kind, ...)) and validated here: defaults live in conf/ only."""
    from sentiloop.settings import check_member_config

    cls = model_class(kind)
    return cls(classes, check_member_config(kind, config), language=language, seed=seed)


def load_model(directory: str | Path) -> SentimentModel:
    meta = _read_meta(Path(directory))
    return model_class(meta["kind"]).load(directory)
