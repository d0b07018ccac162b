"""The run's samples (id, path, label): read by the dataset's reader plug-in, then sorted, subset and sharded.

Labels are 0-based indices in the sorted-wnid order (see ``evalkit.classes``).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

from evalkit.classes import imagenet1k
from evalkit.contract import GROUPS, DatasetOptions, Sample, SkippedFiles, load as load_plugin
from evalkit.errors import UserError


def load(cfg: DatasetOptions, notes: list[str] | None = None) -> list[Sample]:
    """The dataset's samples sorted by id, after the configured subset.

    What the reader warns about is printed and, with ``notes``, appended there (the run records it).
    """
    reader = _reader(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = reader.read(cfg, imagenet1k())
    skipped = [str(w.message) for w in caught if issubclass(w.category, SkippedFiles)]
    if cfg.strict and skipped:
        raise UserError(f"dataset {cfg.name}: {'; '.join(skipped)}; dataset.strict=true scores every file or none: "
                        "fix or remove them, or set dataset.strict=false to score the rest")
    for w in caught:
        print(f"WARNING: {w.message}", file=sys.stderr)
        if notes is not None:
            notes.append(str(w.message))
    samples = sorted(found, key=lambda s: s.id)
    if not samples:
        where = ", ".join(f"dataset.{k}={v}" for k, v in reader_keys(cfg).items())
        raise UserError(f"dataset {cfg.name}: no images found ({where}); point it at the validation images")
    _check_unique(samples)
    return subset(samples, limit=cfg.limit, per_class=cfg.per_class)


def _reader(cfg: DatasetOptions) -> ModuleType:
    reader = load_plugin(GROUPS["reader"], cfg.layout)
    if not isinstance(cfg, reader.Options):
        raise UserError(f"dataset.layout={cfg.layout} does not match dataset={cfg.name}'s keys; "
                        f"choose the layout with dataset={cfg.layout} instead")
    return reader


def label_space(cfg: DatasetOptions) -> list[int] | None:
    """The classes the dataset covers when its reader says it covers fewer than all (ImageNet-A/R), else None."""
    reader = _reader(cfg)
    return sorted(reader.label_space(cfg, imagenet1k())) if hasattr(reader, "label_space") else None


def reader_keys(cfg: DatasetOptions) -> dict[str, Any]:
    """The keys the dataset's reader adds to the common ones (root, labels, ...): where the images are."""
    common = {f.name for f in dataclasses.fields(DatasetOptions)}
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in common}


def shard(samples: list[Sample], num_shards: int, index: int) -> list[Sample]:
    """The index-th of num_shards contiguous blocks (sizes differ by at most one); deterministic."""
    if num_shards < 1 or not 0 <= index < num_shards:
        raise UserError(f"dataset.shard={index} must be in 0..{num_shards - 1} (dataset.num_shards={num_shards})")
    if num_shards > len(samples):
        raise UserError(f"dataset.num_shards={num_shards} is more than the {len(samples)} images")
    start = index * len(samples) // num_shards
    return samples[start:(index + 1) * len(samples) // num_shards]


def subset(samples: list[Sample], limit: int | None = None, per_class: int | None = None) -> list[Sample]:
    """First ``per_class`` of each class, then the first ``limit``; order by id is kept."""
    for name, value in (("per_class", per_class), ("limit", limit)):
        if value is not None and value < 1:
            raise UserError(f"dataset.{name}={value} must be a positive number of images")
    if per_class is not None:
        seen: dict[int, int] = defaultdict(int)
        kept = []
        for s in samples:
            if seen[s.label] < per_class:
                seen[s.label] += 1
                kept.append(s)
        samples = kept
    return samples[:limit] if limit is not None else samples


#: what an id may not hold: evalkit writes ids into lists (Ascend .info, datalists, predictions.csv) and file names
_UNSAFE_ID = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")


def _check_unique(samples: list[Sample]) -> None:
    """Ids are unique and safe to write: no control character (a newline would add a line to a list evalkit
    writes) and no path separator."""
    seen: dict[str, Path] = {}
    for s in samples:
        if _UNSAFE_ID.search(s.id) or not s.id:
            raise UserError(f"{str(s.path)!r}: image id {s.id!r} is empty or holds a control character or path separator, "
                            "which would break the lists and file names evalkit writes; rename the image")
        if s.id in seen:
            raise UserError(f"two images share the id {s.id!r}: {seen[s.id]} and {s.path}; ids are file stems and must be unique")
        seen[s.id] = s.path
