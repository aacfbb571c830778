"""What each DVC stage really reads: its code (import closure inside the repository, by `ast`)
and its params (attribute reads on the typed settings while it runs). tests/test_dag.py compares
both with dvc.yaml. `python tests/dag_support.py` prints each stage's closure (to write dvc.yaml).
"""

from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STAGES = ROOT / "stages"


# --- code ---------------------------------------------------------------------------------------
def module_file(name: str) -> Path | None:
    """The repository file of a dotted module name (None for third-party / stdlib)."""
    base = SRC.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    if "." not in name and (STAGES / f"{name}.py").exists():  # stage scripts import _common
        return STAGES / f"{name}.py"
    return None


def module_name(path: Path) -> str | None:
    try:
        rel = path.relative_to(SRC)
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _packages(name: str) -> list[str]:
    """sentiloop.steps.ingest -> [sentiloop, sentiloop.steps] (their __init__ runs first)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@lru_cache(maxsize=None)
def direct_imports(path: Path) -> frozenset[Path]:
    """Repository files `path` imports anywhere (module level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    is_pkg = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if me is None:
                    continue
                base_parts = me.split(".") if is_pkg else me.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.append(base)
            names += [f"{base}.{a.name}" for a in node.names]  # `from pkg import submodule`
    out = set()
    for name in names:
        for n in _packages(name) + [name]:
            f = module_file(n)
            if f is not None and f != path:
                out.add(f)
    return frozenset(out)


DISPATCH = {"load_model", "build_model", "model_class"}  # models.base: a member class by its kind


def dispatches(path: Path) -> bool:
    """Does `path` call models.base's by-name dispatch (which imports MODEL_KINDS' modules)?"""
    if path == SRC / "sentiloop/models/base.py":
        return False
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id in DISPATCH) or (isinstance(f, ast.Attribute) and f.attr in DISPATCH):
                return True
    return False


def closure(start: Path, *, members: Iterable[str] | None = None) -> set[Path]:
    """Every repository file imported, transitively, from `start`, following the member dispatch
    of models.base (MODEL_KINDS' "module:Class" strings) when some file in the closure uses it:
    for the given `members` only (every member when None)."""
    kinds = _model_kinds()
    wanted = list(kinds) if members is None else list(members)
    dynamic = [module_file(kinds[m].split(":")[0]) for m in wanted]
    seen, todo, dispatched = set(), [start], False
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += list(direct_imports(f))
        if not dispatched and dispatches(f):
            dispatched = True
            todo += dynamic
    return seen


@lru_cache(maxsize=None)
def _model_kinds() -> dict[str, str]:
    tree = ast.parse((SRC / "sentiloop/models/base.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if getattr(target, "id", None) == "MODEL_KINDS":
                return ast.literal_eval(node.value)
    raise AssertionError("models/base.py has no MODEL_KINDS")


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def is_code(dep: str) -> bool:
    return dep.startswith(("src/", "stages/", "hydra_plugins/"))


def covers(dep: str, file: str) -> bool:
    return file == dep or file.startswith(dep.rstrip("/") + "/")


def python_files_under(dep: str) -> set[str]:
    p = ROOT / dep
    if p.is_file():
        return {dep}
    return {rel(f) for f in p.rglob("*.py") if "__pycache__" not in f.parts}


# --- dvc.yaml -------------------------------------------------------------------------------------
def dvc_stages(params: dict) -> dict[str, dict]:
    """dvc.yaml's stages unrolled by hand for `params` (foreach over a list or a dict): name ->
    {"template": stage key, "cmd", "deps", "params", "outs" (metrics and plots included), "item"}."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for key, st in spec.items():
        if "foreach" in st:
            items = _resolve(st["foreach"], params, None)
            pairs = items.items() if isinstance(items, dict) else ((i, i) for i in items)
            for name, item in pairs:
                body = st["do"]
                out[f"{key}@{name}"] = {
                    "template": key,
                    "item": item,
                    **{f: _resolve(body.get(f, []), params, item) for f in FIELDS},
                }
        else:
            out[key] = {"template": key, "item": None, **{f: _resolve(st.get(f, []), params, None) for f in FIELDS}}
    for st in out.values():
        st["deps"] = [_name(d) for d in st["deps"]]
        st["params"] = [_name(p) for p in st["params"]]
        st["outs"] = [_name(o) for o in st["outs"] + st.pop("metrics") + st.pop("plots")]
    return out


FIELDS = ("cmd", "deps", "params", "outs", "metrics", "plots")


def _name(entry) -> str:
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


def _lookup(path: str, params: dict, item: Any):
    node: Any = {"item": item, **params}
    for part in path.split("."):
        node = node[part]
    return node


def _resolve(value, params: dict, item):
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{([^}]+)\}", value)
        if whole:
            return _lookup(whole.group(1), params, item)
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(_lookup(m.group(1), params, item)), value)
    if isinstance(value, list):
        return [_resolve(v, params, item) for v in value]
    if isinstance(value, dict):
        return {_resolve(k, params, item): _resolve(v, params, item) for k, v in value.items()}
    return value


def stage_script(cmd: str) -> Path:
    m = re.search(r"python (stages/\w+\.py)", cmd)
    assert m, f"not a stage script command: {cmd}"
    return ROOT / m.group(1)


def code_closure(stage: dict) -> set[str]:
    """A stage's import closure, with only its own member's module when it is a member's stage."""
    item = stage["item"]
    member = item if isinstance(item, str) else (item or {}).get("member") if isinstance(item, dict) else None
    files = closure(stage_script(stage["cmd"]), members=[member] if member else None)
    return {rel(f) for f in files}


if __name__ == "__main__":
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    seen = set()
    for name, st in dvc_stages(params).items():
        if st["template"] in seen:
            continue
        seen.add(st["template"])
        print(f"{name}:")
        for f in sorted(code_closure(st)):
            print("   ", f)
    sys.exit(0)
