"""ImageNet-R: 30,000 images in wnid folders for 200 of the 1000 classes, scored over those 200 (the model's
other logits are left out before top-k, as its paper and timm's results do)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample
from evalkit.readers import _subset


@dataclass
class Options(DatasetOptions):
    layout: str = "imagenet_r"
    #: the folder of <wnid>/ folders
    root: Optional[str] = None


def read(options: Options, classes: Classes) -> list[Sample]:
    return _subset.read(options, classes, "imagenet_r", "ImageNet-R")


def label_space(options: Options, classes: Classes) -> list[int]:
    return _subset.label_space(options, classes)
