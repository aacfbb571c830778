"""params.yaml as typed, validated objects: the one way the code reads a parameter.

Defaults live in conf/ only (Hydra composes them into params.yaml); these classes say what each
value may be. Validation runs twice, with the same one-line messages
(`params.yaml: correction.queue_at = -0.05: must be between 0 and 1`):
  - when params are composed (`make params`, `dvc exp run`): the ${chain:} resolver in
    hydra_plugins/ validates the whole composed tree before params.yaml is written, so a bad
    value stops there, before any stage runs;
  - at every stage's start (`load`), which also catches a hand-edited params.yaml.

Sections: data.py (data, split), loop.py (schedule, loop, correction, analysis, convergence:
the loop's policy, kept apart because it changes most), members.py (models.<member>),
llm.py, ops.py (ensemble, gate, feedback, report, review, profile).
"""

from __future__ import annotations

import copy
import difflib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from pydantic import PrivateAttr, TypeAdapter, ValidationError, model_validator

from sentiloop.errors import SettingsError
from sentiloop.settings._base import PosInt, Prefixed, Section, describe, fail, validate_section
from sentiloop.settings.data import Data, Split
from sentiloop.settings.llm import LLM
from sentiloop.settings.loop import Analysis, Convergence, Correction, Loop, Schedule
from sentiloop.settings.members import MEMBER_CONFIGS, Models
from sentiloop.settings.ops import Ensemble, Feedback, Gate, Profile, Report, Review

REPO_ROOT = Path(__file__).resolve().parents[3]
PARAMS_FILE = "params.yaml"
DERIVED = ("iterations", "retrain_items")  # expanded by the resolvers, never set by hand


class Iteration(Section):
    k: PosInt
    prev: str


class RetrainItem(Section):
    k: PosInt
    prev: str
    member: str


def iteration_chain(n: int) -> dict[str, dict]:
    """{it1: {k: 1, prev: it0}, ...}: dvc.yaml's foreach over iterations (DVC forbids cycles and
    foreach cannot look at the previous item, so the loop is unrolled here). What an iteration's
    rule is (the schedule's bar, budget or drift bound) is decided by steps/judge.rule_for."""
    return {f"it{k}": {"k": k, "prev": f"it{k - 1}"} for k in range(1, int(n) + 1)}


def retrain_chain(n: int, members: Sequence[str]) -> dict[str, dict]:
    """{it1-lexicon: {k: 1, prev: it0, member: lexicon}, ...}: one retrain stage per member per
    iteration (dvc's matrix over a dict only exposes its keys, so foreach walks this instead)."""
    return {
        f"it{k}-{m}": {"k": k, "prev": f"it{k - 1}", "member": str(m)} for k in range(1, int(n) + 1) for m in members
    }


class Settings(Section):
    """The whole of params.yaml."""

    data: Data
    schedule: Schedule
    llm: LLM
    models: Models
    profile: Profile
    seed: int
    split: Split
    loop: Loop
    correction: Correction
    analysis: Analysis
    convergence: Convergence
    ensemble: Ensemble
    gate: Gate
    feedback: Feedback
    report: Report
    review: Review
    iterations: dict[str, Iteration]
    retrain_items: dict[str, RetrainItem]
    _tree: dict = PrivateAttr(default_factory=dict)  # the params as read (see as_params)

    @model_validator(mode="after")
    def _workable(self):
        if self.llm.provider == "simulated" and not self.data.has_gold:
            raise fail(
                f"llm.provider = 'simulated' answers from gold labels, but data={self.data.source} "
                "has none (data.gold_column = null): choose another llm= (none, gemini, "
                "openai_compatible), or a corpus with a gold column"
            )
        for key in ("cross_fit_members", "guard_scratch"):
            names = getattr(self.loop, key)
            stray = sorted(set(names) - set(MEMBER_CONFIGS))
            if stray:
                raise fail(f"loop.{key} = {names}: {stray} are not members; choose among {sorted(MEMBER_CONFIGS)}")
        n = self.loop.max_iterations
        chain = iteration_chain(n)
        items = retrain_chain(n, self.ensemble.members)
        if {k: v.model_dump() for k, v in self.iterations.items()} != chain or {
            k: v.model_dump() for k, v in self.retrain_items.items()
        } != items:
            raise fail(
                f"iterations/retrain_items do not follow loop.max_iterations = {n} "
                f"and ensemble.members (params.yaml edited by hand?): recompose it with `make params`"
            )
        return self

    # --- conveniences ------------------------------------------------------------------
    @property
    def members(self) -> list[str]:
        return list(self.ensemble.members)

    @property
    def fold_members(self) -> list[str]:
        """The members refitted on cross-fitting folds (none when loop.cross_fit < 2): only their
        train-row predictions are out-of-fold, so only they are evidence for judging labels."""
        if self.loop.cross_fit < 2:
            return []
        return [m for m in self.members if m in self.loop.cross_fit_members]

    @property
    def classes(self) -> list[str]:
        return list(self.data.classes)

    def member_config(self, member: str) -> dict[str, Any]:
        """models.<member> as the plain dict a member is built with (and records in model.json)."""
        return getattr(self.models, member).model_dump()

    def as_params(self) -> dict[str, Any]:
        """The params exactly as params.yaml holds them (a copy), e.g. for a bundle's manifest."""
        return copy.deepcopy(self._tree) if self._tree else self.model_dump()

    def merged(self, overrides: Mapping[str, Any]) -> "Settings":
        """These settings with `overrides` applied (sections merged key by key; a value, even a
        mapping such as data.label_map, replaced), the iteration chain re-derived, validated
        again: how tests and benchmarks vary a run."""
        return validate_composed(_merge_sections(self.as_params(), overrides, ()))


def from_dict(tree: Mapping[str, Any], *, source: str = PARAMS_FILE) -> Settings:
    """Validate a params tree (as composed, derived keys included)."""
    settings = validate_section(Settings, dict(tree), source=source)
    settings._tree = copy.deepcopy(dict(tree))
    return settings


def load(path: str | Path = PARAMS_FILE) -> Settings:
    """Read and validate params.yaml (every stage's first step)."""
    path = Path(path)
    if not path.exists():
        raise SettingsError(f"{path}: not found: run `make params` (or `dvc exp run`) to compose it from conf/")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SettingsError(
            f"{path}: not valid YAML ({str(e).splitlines()[0]}): recompose it with `make params`"
        ) from None
    if not isinstance(tree, dict):
        raise SettingsError(f"{path}: not a mapping of params: recompose it with `make params`")
    return from_dict(tree, source=str(path))


def validate_composed(tree: Mapping[str, Any]) -> Settings:
    """Validate a tree being composed (the resolver's view: derived keys not expanded yet)."""
    tree = {k: v for k, v in tree.items() if k not in DERIVED}
    try:
        n = tree["loop"]["max_iterations"]
        members = tree["ensemble"]["members"]
        tree["iterations"] = iteration_chain(n)
        tree["retrain_items"] = retrain_chain(n, members)
    except (KeyError, TypeError, ValueError):
        tree["iterations"] = tree["retrain_items"] = {}  # the section check names what is wrong
    return from_dict(tree)


# --- composing from conf/ (tests, benchmarks, make params) -----------------------------------
@lru_cache(maxsize=64)
def _compose(overrides: tuple[str, ...], conf_dir: str) -> dict:
    import sys

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    root = str(Path(conf_dir).parent)
    if root not in sys.path:  # hydra_plugins/ (the resolvers) sits beside conf/
        sys.path.insert(0, root)
    import hydra_plugins.chain  # noqa: F401  registers ${chain:} and ${member_chain:}

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir, version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def compose(overrides: Sequence[str] = (), *, conf_dir: str | Path | None = None) -> dict:
    """conf/config.yaml composed with Hydra overrides, resolved and validated: a fresh dict."""
    conf = Path(conf_dir) if conf_dir else REPO_ROOT / "conf"
    try:
        return copy.deepcopy(_compose(tuple(overrides), str(conf.resolve())))
    except Exception as e:  # Hydra/OmegaConf wrap the resolver's SettingsError
        raise composition_error(e) from None


def composition_error(e: BaseException) -> BaseException:
    """The one-line SettingsError inside a Hydra/OmegaConf composition failure, else `e`."""
    seen = e
    while seen is not None:
        if isinstance(seen, SettingsError):
            return SettingsError(str(seen))
        seen = seen.__cause__ or seen.__context__
    text = str(e) or type(e).__name__
    marker = "raised while resolving interpolation: "
    if marker in text:
        return SettingsError(text.split(marker, 1)[1].splitlines()[0])
    if type(e).__module__.split(".")[0] not in ("hydra", "omegaconf"):
        return e
    bad = re.match(r"Could not override '([^']+)'", text)
    if bad:  # a typo on the command line: say which keys that section has
        parts = bad.group(1).split(".")
        known = known_keys(parts[:-1])
        close = difflib.get_close_matches(parts[-1], known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return SettingsError(
            f"override {bad.group(1)}: unknown key; {hint}known keys: {', '.join(known)}"
            if known
            else f"override {bad.group(1)}: unknown key"
        )
    # Hydra's messages span lines ("Could not find 'schedule/x'", then the options): join them
    text = text.split("Config search path")[0]
    head, _, options = text.partition("Available options in")
    lines = [
        ln.strip()
        for ln in head.splitlines()
        if ln.strip() and not ln.strip().startswith(("full_key:", "object_type", "reference_type"))
    ]
    message = "conf/: " + "; ".join(lines)
    if options:
        group, _, names = options.partition(":")
        message += f"; available in{group}: " + ", ".join(n.strip() for n in names.split() if n.strip())
    return SettingsError(message)


def known_keys(path: Sequence[str]) -> list[str]:
    """The keys a section of params.yaml takes (path from the root; [] when not a section)."""
    cls: Any = Settings
    for part in path:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
    return list(getattr(cls, "model_fields", {}))


def compose_settings(overrides: Sequence[str] = (), **kw) -> Settings:
    return from_dict(compose(overrides, **kw))


def member_config(kind: str, **overrides: Any) -> dict[str, Any]:
    """models.<kind> as conf/ composes it (strategy from `overrides` when given), with
    `overrides` applied and validated: how tests and benchmarks build a member outside a run."""
    if kind not in MEMBER_CONFIGS:
        raise SettingsError(f"models.{kind}: unknown member; known: {', '.join(MEMBER_CONFIGS)}")
    group = [f"models/{kind}={overrides['strategy']}"] if "strategy" in overrides else []
    base = compose(group)["models"][kind]
    merged = {**base, **overrides}
    return check_member_config(kind, merged)


def check_member_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A member's complete config, validated (its model_dump: the keys in model.json's order)."""
    if kind not in MEMBER_CONFIGS:
        raise SettingsError(f"models.{kind}: unknown member; known: {', '.join(MEMBER_CONFIGS)}")
    try:
        return TypeAdapter(MEMBER_CONFIGS[kind]).validate_python(dict(config)).model_dump()
    except ValidationError as e:
        raise SettingsError(
            describe(Prefixed(e, ("models", kind)), {"models": {kind: dict(config)}}, "model config")
            + f" (sentiloop.settings.member_config({kind!r}, ...) "
            "completes a config from conf/)"
        ) from None


def llm_config(group: str = "none", **overrides: Any) -> LLM:
    """The llm section of conf/llm/<group>.yaml with `overrides` (nested dicts merged), validated."""
    # only the llm section is wanted; a gold column keeps `simulated` composable beside data=sample
    base = compose([f"llm={group}", "data.gold_column=gold"])["llm"]
    return validate_section(LLM, _merge(base, overrides), prefix=("llm",))


def _merge_sections(base: dict, over: Mapping[str, Any], path: tuple[str, ...]) -> dict:
    out = dict(base)
    for k, v in over.items():
        section = bool(known_keys([*path, k])) or (path[:1] == ("models",) and len(path) == 1)
        out[k] = (
            _merge_sections(out[k], v, (*path, k))
            if section and isinstance(v, Mapping) and isinstance(out.get(k), dict)
            else v
        )
    return out


def _merge(base: dict, over: Mapping[str, Any]) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


__all__ = [
    "DERIVED",
    "REPO_ROOT",
    "Settings",
    "SettingsError",
    "check_member_config",
    "compose",
    "compose_settings",
    "composition_error",
    "from_dict",
    "iteration_chain",
    "llm_config",
    "load",
    "member_config",
    "retrain_chain",
    "validate_composed",
]
