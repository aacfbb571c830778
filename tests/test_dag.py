"""dvc.yaml says what each stage depends on; these tests check it against the code, both ways.

- code: a stage's deps are exactly its import closure inside the repository (ast; members
  reached through models.base's dispatch count for the stage's own member), so editing any
  module a stage runs makes `dvc status` list that stage, and no unused module is declared;
- params: a stage declares exactly the params it reads (recorded while the stage runs on a tiny
  config), so changing a parameter reruns the stages that read it and no others;
- the driver (sentiloop.pipeline.plan) names the same stages as dvc.yaml, in an order its deps
  allow, each bound to the step function its stage script calls.
"""

from __future__ import annotations

import ast
import copy
from collections import defaultdict

import numpy as np
import pytest
import yaml
from pydantic import BaseModel

import dag_support as D
from conftest import ROOT, plant_flips, synthetic_corpus, tiny_data, write_csv
from sentiloop import pipeline
from sentiloop.layout import Layout
from sentiloop.settings import DERIVED, Settings, compose_settings


@pytest.fixture(scope="module")
def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="module")
def stages(default_params) -> dict:
    return D.dvc_stages(default_params)


# --- code ------------------------------------------------------------------------------------------
def test_every_module_a_stage_imports_is_one_of_its_deps(stages):
    missing = {}
    for name, st in stages.items():
        code = [d for d in st["deps"] if D.is_code(d)]
        lost = sorted(f for f in D.code_closure(st) if not any(D.covers(d, f) for d in code))
        if lost:
            missing[name] = lost
    assert not missing, f"dvc.yaml lacks code deps (a change there would leave stale outputs): {missing}"


def test_no_stage_declares_code_it_never_imports(stages):
    """Per dvc.yaml stage (a foreach stage counts all its instances, e.g. train@* declares the
    helper modules some member uses): every code dep is imported, a directory dep only when every
    module under it is."""
    used: dict[str, set[str]] = defaultdict(set)
    declared: dict[str, set[str]] = defaultdict(set)
    for st in stages.values():
        used[st["template"]] |= D.code_closure(st)
        declared[st["template"]] |= {d for d in st["deps"] if D.is_code(d)}
    unused = {}
    for key, deps in declared.items():
        for d in sorted(deps):
            files = D.python_files_under(d)
            if not files or not files <= used[key]:
                unused.setdefault(key, []).append(f"{d}: {sorted(files - used[key])[:3] or 'no module'}")
    assert not unused, f"dvc.yaml declares code its stage never imports (needless reruns): {unused}"


def test_stage_scripts_import_only_their_step():
    """A stage script imports _common and its own sentiloop.steps module; _common imports only
    errors, settings and layout (so no stage drags in the pipeline)."""
    for script in D.STAGES.glob("*.py"):
        closure = {D.rel(f) for f in D.closure(script, members=[])}
        steps = {f for f in closure if f.startswith("src/sentiloop/steps/") and not f.endswith("__init__.py")}
        if script.name == "_common.py":
            assert not steps and "src/sentiloop/pipeline.py" not in closure, closure
            continue
        assert len(steps) == 1 and "src/sentiloop/pipeline.py" not in closure, (script.name, steps)


# --- the driver ------------------------------------------------------------------------------------
def test_the_driver_runs_dvc_yamls_stages_in_an_order_its_deps_allow(default_params, stages):
    from sentiloop.settings import from_dict

    plan = pipeline.plan(from_dict(default_params))
    assert [st.name for st in plan] and set(st.name for st in plan) == set(stages)
    produced_by = {out: name for name, st in stages.items() for out in st["outs"]}
    done: set[str] = set()
    for st in plan:
        for dep in stages[st.name]["deps"]:
            producer = next((p for out, p in produced_by.items() if D.covers(out, dep) or D.covers(dep, out)), None)
            assert producer is None or producer == st.name or producer in done, (
                f"{st.name} runs before {producer}, which writes its dep {dep}"
            )
        done.add(st.name)


def test_each_stage_script_calls_the_step_the_driver_runs(default_params, stages):
    from sentiloop.settings import from_dict

    for st in pipeline.plan(from_dict(default_params)):
        fn = getattr(st.run, "func", st.run)
        module = fn.__module__  # sentiloop.steps.<x>
        script = D.stage_script(stages[st.name]["cmd"])
        tree = ast.parse(script.read_text())
        imported = {
            f"{n.module}.{a.name}"
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module
            for a in n.names
        }
        called = {
            f"{n.func.value.id}.{n.func.attr}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) is False
            and isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name)
        }
        referenced = {
            f"{n.value.id}.{n.attr}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
        }
        short = module.rsplit(".", 1)[1]
        assert module in imported, (st.name, script.name, module)
        assert f"{short}.{fn.__name__}" in referenced | called, (st.name, script.name, fn.__name__)


# --- params ----------------------------------------------------------------------------------------
class Reads:
    """Wraps the settings and records every parameter path a stage reads."""

    # helpers on the settings that read params on the caller's behalf
    DERIVED_READS = {
        "members": ["ensemble.members"],
        "classes": ["data.classes"],
        "enabled": ["llm.provider"],
        "has_gold": ["data.gold_column"],
        "api_key": ["llm.api_key_env"],
        "active": ["data.noise.rate", "data.noise.matrix"],
        "fold_members": ["loop.cross_fit", "loop.cross_fit_members", "ensemble.members"],
    }

    def __init__(self, obj, path: str, log: set[str]):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_log", log)

    @property
    def __class__(self):  # isinstance(reads, LLM) holds, as for the wrapped object
        return type(self._obj)

    def _p(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def __getattr__(self, name):
        obj, log = self._obj, self._log
        if name in self.DERIVED_READS:
            log.update(self.DERIVED_READS[name])
            return getattr(obj, name)
        if name == "member_config":
            return lambda member: (log.add(f"models.{member}"), obj.member_config(member))[1]
        value = getattr(obj, name)
        if isinstance(value, BaseModel):
            return Reads(value, self._p(name), log)
        if callable(value) and not isinstance(value, type):
            log.add(self._path or "*")  # model_dump, model_copy, as_params, cost ...
            return value
        log.add(self._p(name))
        return value

    def __eq__(self, other):
        return self._obj == (other._obj if isinstance(other, Reads) else other)

    __hash__ = None


def _tiny_settings(tmp_path) -> Settings:
    texts, gold = synthetic_corpus(240, seed=3)
    noisy, _ = plant_flips(gold, 0.3, seed=4)
    names = np.array(["negative", "positive"])
    csv = write_csv(
        tmp_path / "tiny.csv",
        [
            {"id": i, "text": t, "label": names[y], "gold": names[g]}
            for i, (t, y, g) in enumerate(zip(texts, noisy, gold))
        ],
    )
    return compose_settings(
        [
            "ensemble.members=[lexicon]",
            "loop.max_iterations=2",
            "llm=simulated",
            "data.gold_column=gold",
            "models.lexicon.seed_lexicon=none",
            "report.max_token_rows=300",
            "gate.f1_threshold=1.0",
            "gate.max_attempts=1",
            "loop.cross_fit=2",
        ]
    ).merged(
        {
            "data": tiny_data(csv, gold=True),
            "schedule": {"start": 0.66, "end": 0.6},
        }
    )


@pytest.fixture(scope="module")
def reads(tmp_path_factory) -> dict[str, set[str]]:
    """Every stage of the tiny run, with the params it read. The run takes the branches that
    read the most: llm=simulated (the annotator's keys), cross-fitting (the fold seed), a gate
    below its bar (the retry keys)."""
    tmp = tmp_path_factory.mktemp("dag")
    s = _tiny_settings(tmp)
    L = Layout(tmp / "run")
    out = {}
    for st in pipeline.plan(s):
        log: set[str] = set()
        st.run(Reads(s, "", log), L)
        out[st.name] = log
    return out


def _declared(st: dict) -> list[str]:
    return st["params"]


def _covers(declared: str, read: str) -> bool:
    if declared == "params.yaml":  # `- params.yaml:` tracks every parameter
        return True
    return read == "*" or read == declared or read.startswith(declared + ".")


def test_every_param_a_stage_reads_is_declared(reads, tmp_path):
    st_all = D.dvc_stages(_tiny_settings(tmp_path).as_params())
    missing = {
        name: sorted(r for r in got if not any(_covers(d, r) for d in _declared(st_all[name])))
        for name, got in reads.items()
    }
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"params read but not declared in dvc.yaml (changing them would not rerun): {missing}"


def test_no_stage_declares_a_param_it_never_reads(reads, tmp_path):
    st_all = D.dvc_stages(_tiny_settings(tmp_path).as_params())
    extra = {}
    for name, got in reads.items():
        for d in _declared(st_all[name]):
            if d != "params.yaml" and not any(
                r == d or r.startswith(d + ".") or d.startswith(r + ".") or r == "*" for r in got
            ):
                extra.setdefault(name, []).append(d)
    assert not extra, f"dvc.yaml declares params these stages never read (needless reruns): {extra}"


def test_a_members_stages_depend_on_its_own_models_section_only(stages):
    for name, st in stages.items():
        if st["template"] in ("train", "retrain"):
            member = st["item"] if isinstance(st["item"], str) else st["item"]["member"]
            assert [p for p in st["params"] if p.startswith("models")] == [f"models.{member}"], name


def test_every_parameter_is_read_by_some_stage(reads, tmp_path):
    """Nothing in params.yaml is dead (profile only steers the composition; the iteration chain
    is dvc.yaml's foreach)."""
    tree = _tiny_settings(tmp_path).as_params()
    all_reads = set().union(*reads.values())

    def leaves(node, prefix=""):
        if isinstance(node, dict) and node and prefix not in ("data.label_map", "ensemble.weights", "report.compare"):
            for k, v in node.items():
                yield from leaves(v, f"{prefix}.{k}" if prefix else k)
        else:
            yield prefix

    unread = [
        p
        for p in leaves({k: v for k, v in tree.items() if k not in (*DERIVED, "profile")})
        if not any(r == p or p.startswith(r + ".") or r == "*" for r in all_reads)
    ]
    # keys read only by a provider or strategy that the tiny run does not use
    other_paths = {
        "llm.base_url",
        "llm.api_version",
        "llm.temperature",
        "llm.thinking_budget",
        "llm.response_format",
        "llm.timeout_s",
        "llm.model",
        "llm.retries.attempts",
        "llm.retries.backoff_s",
        "llm.retries.max_backoff_s",
        "llm.review.enabled",
        "llm.review.max_output_tokens",
        "models.lstm",
        "models.bilstm",
        "models.bert",
        "llm.price.input_per_mtok",
        "llm.price.output_per_mtok",
        "llm.api_key_env",
        "schedule.max_drift",
        "llm.budget.est_output_tokens_per_row",
    }
    unread = [p for p in unread if not any(p == o or p.startswith(o + ".") for o in other_paths)]
    assert not unread, f"params no stage reads (dead keys, or a stage that lost a read): {unread}"


def test_recorded_settings_behave_like_the_settings(tmp_path):
    s = _tiny_settings(tmp_path)
    log: set[str] = set()
    r = Reads(s, "", log)
    assert r.loop.chunk_size == s.loop.chunk_size and r.members == ["lexicon"]
    assert isinstance(r.llm, type(s.llm)) and r.member_config("lexicon") == s.member_config("lexicon")
    assert {"loop.chunk_size", "ensemble.members", "models.lexicon"} <= log
    assert copy.deepcopy(s.as_params()) == s.as_params()
