"""The corpus (data=...) and how it is split."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from sentiloop.settings._base import PosInt, Section, Share, fail


class Data(Section):
    """conf/data/<choice>.yaml: where the corpus is and how to read it."""

    source: str
    path: str                     # read by ingest and a dep of the ingest stage (dvc.yaml)
    format: Literal["auto", "csv", "tsv", "parquet", "sqlite"]
    encoding_errors: Literal["strict", "replace"]
    language: Literal["en", "ko"]
    classes: list[str]
    id_column: str | None
    text_column: str
    label_column: str
    gold_column: str | None
    label_map: dict[str, str]
    filtered_labels: list[str]    # source label values outside the corpus's definition: counted as filtered
    max_text_chars: PosInt
    max_rows: PosInt | None

    @property
    def has_gold(self) -> bool:
        """True labels are known (planted-noise benchmarks): the simulated annotator needs them."""
        return self.gold_column is not None

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
            raise fail(f"data.path is not set for data={self.source}: pass -S data.path=<file> "
                       "(a file inside the repository, added with `dvc add`)")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise fail(f"data.classes = {self.classes}: must be two or more distinct class names")
        both = sorted(set(self.filtered_labels) & set(self.label_map))
        if both:
            raise fail(f"data.filtered_labels = {self.filtered_labels}: {both} also in data.label_map; "
                       "a source label is either part of the corpus (label_map) or filtered out")
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
            raise fail(f"split.test_size = {self.test_size}, split.dev_size = {self.dev_size}: need "
                       "test_size > 0 and test_size + dev_size < 1")
        return self
