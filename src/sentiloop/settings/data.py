"""The corpus (data=...) and how it is split."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from sentiloop.settings._base import PosInt, Section, Share, fail


class Noise(Section):
    """data.noise: label noise planted at ingest (planted-noise experiments through the real
    pipeline). The accepted labels become the gold labels (data/gold.sqlite, scored only); the
    loop sees the noisy ones; the test split gets its true labels back at split."""

    rate: Share  # symmetric: this share of every class flipped (0 = off)
    matrix: list[list[float]] | None  # class-conditional T[true, noisy] over data.classes (overrides rate)
    seed: int

    @property
    def active(self) -> bool:
        return self.matrix is not None or self.rate > 0


class Data(Section):
    """conf/data/<choice>.yaml: where the corpus is and how to read it."""

    source: str
    path: str  # read by ingest and a dep of the ingest stage (dvc.yaml)
    format: Literal["auto", "csv", "tsv", "parquet", "sqlite"]
    encoding_errors: Literal["strict", "replace"]
    language: Literal["en", "ko"]
    classes: list[str]
    id_column: str | None
    text_column: str
    label_column: str
    gold_column: str | None
    label_map: dict[str, str]
    filtered_labels: list[str]  # source label values outside the corpus's definition: counted as filtered
    max_text_chars: PosInt
    max_rows: PosInt | None
    noise: Noise

    @property
    def has_gold(self) -> bool:
        """True labels are known (planted-noise benchmarks): the simulated annotator needs them."""
        return self.gold_column is not None or self.noise.active

    @field_validator("filtered_labels", mode="before")
    @classmethod
    def _string_values(cls, v):
        return [str(x) for x in v] if isinstance(v, (list, tuple)) else v

    @field_validator("label_map", mode="before")
    @classmethod
    def _string_keys(cls, v):
        # YAML reads an unquoted rating (1: negative) as an int; the source's values are text
        return {str(k): val for k, val in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _consistent(self):
        if self.path in ("", "???"):
            raise fail(
                f"data.path is not set for data={self.source}: pass -S data.path=<file> "
                "(a file inside the repository, added with `dvc add`)"
            )
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise fail(f"data.classes = {self.classes}: must be two or more distinct class names")
        both = sorted(set(self.filtered_labels) & set(self.label_map))
        if both:
            raise fail(
                f"data.filtered_labels = {self.filtered_labels}: {both} also in data.label_map; "
                "a source label is either part of the corpus (label_map) or filtered out"
            )
        m = self.noise.matrix
        if m is not None:
            k = len(self.classes)
            if len(m) != k or any(len(row) != k for row in m):
                raise fail(
                    f"data.noise.matrix = {m}: must be {k} x {k} (rows = true class, columns = "
                    f"noisy class, over data.classes = {self.classes})"
                )
            if any(v < 0 for row in m for v in row) or any(abs(sum(row) - 1) > 1e-6 for row in m):
                raise fail(f"data.noise.matrix = {m}: entries must be >= 0 and every row must sum to 1")
        if self.noise.active and self.gold_column is not None:
            raise fail(
                f"data.noise: data={self.source} already has gold labels (data.gold_column = "
                f"{self.gold_column!r}); plant noise only into a corpus whose labels are taken as true"
            )
        bad = sorted(set(self.label_map.values()) - set(self.classes))
        if bad:
            raise fail(f"data.label_map maps to {bad}, which are not in data.classes = {self.classes}")
        return self


class Split(Section):
    test_size: Share
    dev_size: Share
    seed: int

    @model_validator(mode="after")
    def _sizes(self):
        if not (self.test_size > 0 and self.test_size + self.dev_size < 1):
            raise fail(
                f"split.test_size = {self.test_size}, split.dev_size = {self.dev_size}: need "
                "test_size > 0 and test_size + dev_size < 1"
            )
        return self
