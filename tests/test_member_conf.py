"""The Hydra strategy choices compose and every key they set is one the member understands."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = {"lstm": ["finetune", "scratch"], "bilstm": ["finetune", "scratch"],
              "bert": ["finetune", "head", "scratch"]}


def _compose(overrides):
    if str(ROOT) not in sys.path:     # hydra_plugins/ lives at the repository root
        sys.path.insert(0, str(ROOT))
    import hydra_plugins.chain  # noqa: F401  (registers the ${chain:} resolver)
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return compose("config", overrides=overrides)


def _defaults(kind):
    from importlib import import_module
    return import_module(f"sentiloop.models.{kind}").DEFAULTS


@pytest.mark.parametrize("kind,strategy", [(k, s) for k, ss in STRATEGIES.items() for s in ss])
def test_each_strategy_composes_with_known_keys(kind, strategy):
    from omegaconf import OmegaConf
    cfg = OmegaConf.to_container(_compose([f"models/{kind}={strategy}"]).models[kind], resolve=True)
    assert cfg["strategy"] == strategy
    unknown = set(cfg) - set(_defaults(kind))
    assert not unknown, f"models/{kind}/{strategy}.yaml sets unknown keys {unknown}"


def test_profiles_choose_the_bert_strategy_and_the_command_line_wins():
    assert _compose([]).models.bert.strategy == "head"
    gpu = _compose(["profile=gpu"])
    assert gpu.models.bert.strategy == "finetune" and gpu.models.bert.device == "cuda"
    assert _compose(["models/bert=scratch"]).models.bert.strategy == "scratch"


def test_lstm_and_bilstm_build_the_same_vocabulary():
    cfg = _compose([])
    keys = ("max_vocab", "min_count", "max_len")
    assert {k: cfg.models.lstm[k] for k in keys} == {k: cfg.models.bilstm[k] for k in keys}
