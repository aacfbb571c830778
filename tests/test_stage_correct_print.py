"""The correct stage's printed line counts human label changes in `changes`."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_printed_changes_include_human_ones(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "stages"))
    spec = importlib.util.spec_from_file_location("stage_correct", ROOT / "stages/correct.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = {"k": 2, "passed_through": False, "changes": 3, "label_change_rate": 0.1,
         "corrections_by_source": {"human": 2, "ensemble": 3}}
    assert mod.summary(r) == {"k": 2, "passed_through": False, "changes": 5, "of_which_human": 2,
                              "label_change_rate": 0.1}
    passed = {"k": 3, "passed_through": True, "changes": 0, "label_change_rate": 0.0,
              "corrections_by_source": {"human": 1}}
    assert mod.summary(passed)["changes"] == 1
