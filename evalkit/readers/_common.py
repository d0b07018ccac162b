"""What the readers share: wnid folders, ``path label`` lines (labels as class index or wnid), the 200-class sets."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from evalkit.contract import Classes, Sample, warn_skipped
from evalkit.errors import UserError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def images_in(folder: Path, skipped: dict[str, str]) -> list[Path]:
    """The image files of a folder, sorted; an entry named like an image that is no file (a dangling symlink, a
    folder) is added to ``skipped`` (path -> why) for ``warn_skipped``."""
    images = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.is_file():
            images.append(p)
        else:
            skipped[str(p)] = "a symlink to nothing" if p.is_symlink() and not p.exists() else "not a file"
    return images


def root_folder(root: str | None, name: str) -> Path:
    """``dataset.root`` as an existing folder."""
    if not root:
        raise UserError(f"dataset {name} needs dataset.root=PATH (the folder of validation images)")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise UserError(f"dataset.root={root}: no such folder")
    return folder


def wnid_folders(root: Path, classes: Classes, layout: str) -> list[Sample]:
    """``root/<wnid>/*`` images; a folder that is no ImageNet-1k wnid is a UserError. Images beside the folders, and
    wnid links to nothing, are skipped and named (``warn_skipped``)."""
    index = {w: i for i, w in enumerate(classes.wnids)}
    samples: list[Sample] = []
    skipped: dict[str, str] = {}
    skipped.update({str(p): "not in a <wnid>/ folder" for p in images_in(root, skipped)})
    skipped.update({str(p): "a symlink to nothing" for p in sorted(root.iterdir())
                    if p.name in index and p.is_symlink() and not p.exists()})
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name not in index:
            raise UserError(f"{d}: folder name {d.name!r} is not an ImageNet-1k wnid; the {layout} layout needs "
                            "root/<wnid>/<image> (for a flat folder use dataset=labelfile)")
        samples += [Sample(p.stem, p, index[d.name]) for p in images_in(d, skipped)]
    warn_skipped(skipped)
    return samples


@lru_cache(maxsize=None)
def official_wnids(name: str) -> frozenset[str]:
    """The classes of a 200-class test set as its authors list them (``imagenet_a``, ``imagenet_r``)."""
    text = resources.files("evalkit.readers").joinpath("data", f"{name}_wnids.txt").read_text()
    return frozenset(text.split())


def parse_label(text: str, where: str, index: dict[str, int]) -> int:
    """A class index, or a wnid looked up in ``index`` (wnid -> index)."""
    if text in index:
        return index[text]
    try:
        label = int(text)
    except ValueError:
        raise UserError(f"{where}: label {text!r} is neither a class index nor a wnid") from None
    if not 0 <= label < len(index):
        raise UserError(f"{where}: label {label} is out of range 0..{len(index) - 1} "
                        "(labels are 0-based sorted-wnid indices)")
    return label


def parse(lines: list[str], base: Path, source: str, classes: Classes, confine: bool = True) -> list[Sample]:
    """``path label`` lines; with ``confine`` a path may not leave ``base`` (no ``../``, no absolute paths)."""
    samples = []
    index = {w: i for i, w in enumerate(classes.wnids)}
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
        samples.append(Sample(path.stem, path, parse_label(parts[1], where, index)))
    return samples
