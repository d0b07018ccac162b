"""``root/<wnid>/*.JPEG``: the torchvision ImageFolder layout (timm, MindSpore, VastAI)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample
from evalkit.readers._common import official_wnids, root_folder, wnid_folders


#: a folder of at least this many classes, all of a 200-class test set, is taken for that set
SUBSET_MIN = 10


@dataclass
class Options(DatasetOptions):
    layout: str = "imagefolder"
    #: the folder of <wnid>/ folders
    root: Optional[str] = None


def read(options: Options, classes: Classes) -> list[Sample]:
    root = root_folder(options.root, options.name)
    samples = wnid_folders(root, classes, "imagefolder")
    _warn_if_a_200_class_set(root)
    return samples


def _warn_if_a_200_class_set(root: Path) -> None:
    """ImageNet-A and -R read as a plain folder are scored 1000-way: much lower numbers than published."""
    wnids = {d.name for d in root.iterdir() if d.is_dir()}
    for name, label in (("imagenet_a", "ImageNet-A"), ("imagenet_r", "ImageNet-R")):
        official = official_wnids(name)
        if len(wnids) >= SUBSET_MIN and wnids <= official:
            warnings.warn(f"{root} holds only {label} classes ({len(wnids)} of its {len(official)}); as "
                          f"dataset=imagefolder the model's 1000 classes compete, while {label} is scored over its "
                          f"own classes: use dataset={name}")
