"""The ensemble members every arm uses, configured exactly as the pipeline configures them.

The member settings come from the project's Hydra config (conf/), composed with the same
overrides the sentiloop arm runs with (sentiloop.settings.compose_settings), so "same members"
holds by construction: the baselines and the loop build `build_model(kind, classes,
settings.member_config(kind), language, seed)` alike, and score with sentiloop.ensemble.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from sentiloop import ensemble
from sentiloop.models import build_model
from sentiloop.settings import Settings


def fit_members(
    cfg: Settings, texts: Sequence[str], labels: np.ndarray, *, seed: int, init_from: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    models = {}
    for kind in cfg.members:
        model = build_model(kind, cfg.classes, cfg.member_config(kind), language=cfg.data.language, seed=seed)
        prev = (init_from or {}).get(kind)
        models[kind] = model.fit(list(texts), np.asarray(labels, dtype=np.int64), init_from=prev)
    return models


def ensemble_proba(cfg: Settings, models: Mapping[str, Any], texts: Sequence[str]) -> np.ndarray:
    """The pipeline's weighted soft vote over the members (sentiloop.ensemble.predict_proba)."""
    return ensemble.predict_proba(models, cfg.ensemble.weights, texts)
