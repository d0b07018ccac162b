"""Samples (id, path, label) from the ImageNet layouts in use, and deterministic subsets.

Labels are 0-based indices in the sorted-wnid order (see ``evalkit.classes``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from evalkit.classes import imagenet1k
from evalkit.config import DatasetConfig
from evalkit.contract import Sample
from evalkit.errors import UserError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def load(cfg: DatasetConfig) -> list[Sample]:
    """The dataset's samples sorted by id, after the configured subset."""
    layouts = {"imagefolder": _imagefolder, "labelfile": _labelfile, "files": _files}
    if cfg.layout not in layouts:
        raise UserError(f"dataset.layout={cfg.layout!r} is not one of {', '.join(layouts)}")
    samples = sorted(layouts[cfg.layout](cfg), key=lambda s: s.id)
    if not samples:
        raise UserError(f"dataset {cfg.name}: no images found under {cfg.root}; point dataset.root at the validation images")
    _check_unique(samples)
    return subset(samples, limit=cfg.limit, per_class=cfg.per_class)


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


def _root(cfg: DatasetConfig) -> Path:
    if not cfg.root:
        raise UserError(f"dataset {cfg.name} needs dataset.root=PATH (the folder of validation images)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset.root={cfg.root}: no such folder")
    return root


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


def _imagefolder(cfg: DatasetConfig) -> list[Sample]:
    root = _root(cfg)
    index = imagenet1k().index
    samples = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name not in index:
            raise UserError(
                f"{d}: folder name {d.name!r} is not an ImageNet-1k wnid; "
                "the imagefolder layout needs root/<wnid>/*.JPEG (for a flat folder use dataset=labelfile)"
            )
        samples += [Sample(p.stem, p, index[d.name]) for p in sorted(d.iterdir()) if _is_image(p)]
    return samples


def _parse_label(text: str, where: str) -> int:
    index = imagenet1k().index
    if text in index:
        return index[text]
    try:
        label = int(text)
    except ValueError:
        raise UserError(f"{where}: label {text!r} is neither a class index nor a wnid") from None
    if not 0 <= label < len(index):
        raise UserError(f"{where}: label {label} is out of range 0..{len(index) - 1} (labels are 0-based sorted-wnid indices)")
    return label


def _parse_lines(lines: list[str], base: Path, source: str, confine: bool = True) -> list[Sample]:
    """``path label`` lines; with ``confine`` a path may not leave ``base`` (no ``../``, no absolute paths)."""
    samples = []
    root = Path(os.path.abspath(base))  # lexical: symlinked images inside the root stay allowed
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{source}:{n}"
        if len(parts) != 2:
            raise UserError(f"{where}: expected 'path label', got {line.strip()!r}")
        path = (base / parts[0]).expanduser()
        if confine and not Path(os.path.abspath(path)).is_relative_to(root):
            raise UserError(f"{where}: {parts[0]} points outside the dataset root {root}")
        if not path.is_file():
            raise UserError(f"{where}: image {path} does not exist; check dataset.root and the label file's paths")
        samples.append(Sample(path.stem, path, _parse_label(parts[1], where)))
    return samples


def _labelfile(cfg: DatasetConfig) -> list[Sample]:
    """Caffe/mmcls/Ascend ``name.JPEG 65`` or PaddleClas ``val/name.JPEG 65``, paths relative to root."""
    root = _root(cfg)
    if not cfg.labels:
        raise UserError("dataset.labels=PATH is needed: a file of 'ILSVRC2012_val_00000001.JPEG 65' lines")
    labels = Path(cfg.labels).expanduser()
    if not labels.is_file():
        raise UserError(f"dataset.labels={cfg.labels}: no such file")
    lines = labels.read_text().splitlines()
    first = next((ln.split()[0] for ln in lines if ln.strip()), "")
    # PaddleClas lists paths relative to the parent of the image folder ("val/x.JPEG").
    base = root.parent if first and not (root / first).exists() and (root.parent / first).exists() else root
    return _parse_lines(lines, base, str(labels))


def _files(cfg: DatasetConfig) -> list[Sample]:
    return _parse_lines(list(cfg.files), Path("."), f"dataset {cfg.name} files", confine=False)


def _check_unique(samples: list[Sample]) -> None:
    seen: dict[str, Path] = {}
    for s in samples:
        if s.id in seen:
            raise UserError(f"two images share the id {s.id!r}: {seen[s.id]} and {s.path}; ids are file stems and must be unique")
        seen[s.id] = s.path
