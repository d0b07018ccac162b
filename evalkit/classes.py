"""The ImageNet-1k class list: index = position of the wnid in the sorted wnid list."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class ClassList:
    wnids: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.wnids)

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.wnids)}


@lru_cache(maxsize=1)
def imagenet1k() -> ClassList:
    """The 1000 classes shipped as package data (sorted wnids, short names)."""
    text = resources.files("evalkit").joinpath("data/imagenet1k_classes.tsv").read_text()
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    wnids = tuple(r["wnid"] for r in rows)
    if list(wnids) != sorted(wnids) or [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise AssertionError("imagenet1k_classes.tsv is not in sorted-wnid order")
    return ClassList(wnids, tuple(r["short_name"] for r in rows))
