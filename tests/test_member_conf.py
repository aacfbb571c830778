"""The Hydra strategy choices compose into configs the member accepts: every key known, every
value in range, and no defaults hidden in the member's code (conf/ is the one place)."""

import importlib

import pytest

from sentiloop.settings import check_member_config, compose
from sentiloop.settings.members import MEMBER_CONFIGS

STRATEGIES = {
    "lexicon": ["blend", "scratch"],
    "lstm": ["finetune", "scratch"],
    "bilstm": ["finetune", "scratch"],
    "bert": ["finetune", "head", "scratch"],
}


@pytest.mark.parametrize("kind,strategy", [(k, s) for k, ss in STRATEGIES.items() for s in ss])
def test_each_strategy_composes_with_known_keys(kind, strategy):
    cfg = compose([f"models/{kind}={strategy}"])["models"][kind]
    assert cfg["strategy"] == strategy
    assert check_member_config(kind, cfg) == cfg  # complete, nothing unknown, in range


def test_members_keep_no_defaults_of_their_own():
    for kind in MEMBER_CONFIGS:
        module = importlib.import_module(f"sentiloop.models.{kind}")
        assert not hasattr(module, "DEFAULTS"), f"sentiloop.models.{kind} has code defaults"


def test_profiles_choose_the_bert_strategy_and_the_command_line_wins():
    assert compose([])["models"]["bert"]["strategy"] == "head"
    gpu = compose(["profile=gpu"])["models"]["bert"]
    assert gpu["strategy"] == "finetune" and gpu["device"] == "cuda"
    assert compose(["models/bert=scratch"])["models"]["bert"]["strategy"] == "scratch"


def test_lstm_and_bilstm_build_the_same_vocabulary():
    models = compose([])["models"]
    keys = ("max_vocab", "min_count", "max_len")
    assert {k: models["lstm"][k] for k in keys} == {k: models["bilstm"][k] for k in keys}
