"""What every settings section shares: strict, frozen, no unknown keys, readable range errors.

A section has no defaults of its own: conf/ is the one place where a default lives, so a field
here only says what a value may be. Ranges are written with the helpers below so a bad value is
reported as `correction.queue_at = -0.05: must be between 0 and 1`, not pydantic's prose.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from sentiloop.errors import SettingsError


class Section(BaseModel):
    """A block of params.yaml: strict types, frozen, every key required, unknown keys refused."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                key = str(unknown[0])
                close = difflib.get_close_matches(key, list(cls.model_fields), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key; {hint}known keys: {known}",
                    {"key": key, "value": data[unknown[0]], "hint": hint, "known": ", ".join(cls.model_fields)},
                )
        return data


def _fmt_bound(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def check_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """An AfterValidator for lo <= v <= hi (open ends where asked); None passes (Optional fields)."""
    if lo is not None and hi is not None:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        if not lo_open and not hi_open:
            text = f"must be between {_fmt_bound(lo)} and {_fmt_bound(hi)}"
        else:
            text = f"must be in {left}{_fmt_bound(lo)}, {_fmt_bound(hi)}{right}"
    elif lo is not None:
        text = f"must be {'>' if lo_open else '>='} {_fmt_bound(lo)}"
    else:
        text = f"must be {'<' if hi_open else '<='} {_fmt_bound(hi)}"

    def check(v):
        if v is None:
            return v
        bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (
            hi is not None and (v >= hi if hi_open else v > hi)
        )
        if bad:
            raise PydanticCustomError("range", text)
        return v

    return AfterValidator(check)


# the ranges used across sections
Share = Annotated[float, check_range(0, 1)]  # a fraction / probability
Threshold = Annotated[float, check_range(0, 1, lo_open=True)]  # a confidence bar, (0, 1]
PosFloat = Annotated[float, check_range(0, lo_open=True)]
NonNegFloat = Annotated[float, check_range(0)]
PosInt = Annotated[int, check_range(1)]
NonNegInt = Annotated[int, check_range(0)]


def fail(message: str) -> PydanticCustomError:
    """A cross-key problem (the message names every key involved); raise it from a validator."""
    return PydanticCustomError("combination", message)


def _value(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _key(loc: tuple, tree: Any) -> list[str]:
    """The loc's path in params.yaml terms: union tags ('head', 'function-after[...]') dropped."""
    path, node = [], tree
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(f"[{part}]")
            node = node[part]
        elif isinstance(part, str) and not part.startswith("function-"):
            # a discriminated union's tag is the discriminator's value: not a key; anything
            # else not in the input is the key that is missing
            tag = isinstance(node, dict) and part in [v for v in node.values() if isinstance(v, str)]
            if not tag:
                path.append(part)
    return path


def describe(error: ValidationError, tree: Any, source: str = "params.yaml") -> str:
    """One line for the first problem pydantic found: `<source>: <key> = <value>: <allowed>`."""
    errs = error.errors(include_url=False)
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    e = errs[0]
    path = _key(tuple(e["loc"]), tree)
    key = ".".join(path).replace(".[", "[")
    ctx = e.get("ctx") or {}
    kind = e["type"]
    if kind == "combination":
        return f"{source}: {e['msg']}{more}"
    if kind == "missing":
        return (
            f"{source}: {key} is missing: every key has its default in conf/; "
            f"recompose with `make params` (or `dvc exp run`){more}"
        )
    if kind == "unknown_key":
        key = ".".join(path + [ctx["key"]])
        return f"{source}: {key} = {_value(ctx['value'])}: {e['msg']}{more}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx.get("discriminator", "").strip("'")
        value = ctx.get("tag")
        return f"{source}: {key}.{tag} = {_value(value)}: must be one of {ctx.get('expected_tags')}{more}"
    msg = e["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    if kind == "literal_error":
        msg = f"must be one of {ctx.get('expected', '')}".replace(" or ", ", ")
    return f"{source}: {key} = {_value(e.get('input'))}: {msg}{more}"


def validate_section(cls: type[BaseModel], data: Any, *, source: str = "params.yaml", prefix: tuple[str, ...] = ()):
    """cls.model_validate(data) with a one-line SettingsError (keys prefixed with `prefix`)."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        tree: Any = data
        for p in reversed(prefix):
            tree = {p: tree}
        wrapped = Prefixed(e, prefix) if prefix else e
        raise SettingsError(describe(wrapped, tree, source)) from None


class Prefixed:
    """A ValidationError whose locations start below `prefix` (a section validated alone)."""

    def __init__(self, error: ValidationError, prefix: tuple[str, ...]):
        self.error, self.prefix = error, prefix

    def errors(self, **kw):
        return [{**e, "loc": self.prefix + tuple(e["loc"])} for e in self.error.errors(**kw)]
