"""The ensemble members every arm uses, configured exactly as the pipeline configures them.

The member settings come from the project's Hydra config (conf/), composed with the same
overrides the sentiloop arm runs with, so "same members" holds by construction: the baselines
and the loop fit `build_model(kind, classes, cfg.models.<kind>, language, seed)` alike.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sentiloop.models import build_model

REPO_ROOT = Path(__file__).resolve().parents[3]


def compose_config(overrides: Sequence[str] = (), *, conf_dir: str | Path | None = None) -> dict:
    """Compose conf/config.yaml with Hydra overrides into a plain, resolved dict (a fresh copy)."""
    import copy

    return copy.deepcopy(_compose(tuple(overrides), str(conf_dir) if conf_dir else None))


@lru_cache(maxsize=32)
def _compose(overrides: tuple[str, ...], conf_dir: str | None) -> dict:
    import sys

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    conf_dir = Path(conf_dir) if conf_dir else REPO_ROOT / "conf"
    root = str(conf_dir.resolve().parent)
    if root not in sys.path:   # hydra_plugins/ (the chain resolver) sits beside conf/
        sys.path.insert(0, root)
    import hydra_plugins.chain  # noqa: F401  registers ${chain:...}

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def member_kinds(cfg: Mapping[str, Any]) -> list[str]:
    kinds = list(cfg["ensemble"]["members"])
    if not kinds:
        raise ValueError("ensemble.members is empty")
    missing = [k for k in kinds if k not in cfg.get("models", {})]
    if missing:
        raise ValueError(f"members {missing} have no config under models/ (add e.g. "
                         f"'+models/{missing[0]}=<strategy>' to the overrides)")
    return kinds


def fit_members(cfg: Mapping[str, Any], texts: Sequence[str], labels: np.ndarray, *,
                seed: int, init_from: Mapping[str, Any] | None = None) -> dict[str, Any]:
    classes = list(cfg["data"]["classes"])
    language = cfg["data"]["language"]
    models = {}
    for kind in member_kinds(cfg):
        model = build_model(kind, classes, dict(cfg["models"][kind]), language=language, seed=seed)
        prev = (init_from or {}).get(kind)
        models[kind] = model.fit(list(texts), np.asarray(labels, dtype=np.int64), init_from=prev)
    return models


def ensemble_proba(cfg: Mapping[str, Any], models: Mapping[str, Any], texts: Sequence[str]) -> np.ndarray:
    """The pipeline's weighted soft vote (sentiloop.ensemble.combine) over the members."""
    from sentiloop import ensemble

    texts = list(texts)
    probs = {kind: np.asarray(model.predict_proba(texts), dtype=float) for kind, model in models.items()}
    return ensemble.combine(probs, cfg["ensemble"].get("weights") or {})
