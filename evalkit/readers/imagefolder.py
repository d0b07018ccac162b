"""``root/<wnid>/*.JPEG``: the torchvision ImageFolder layout (timm, MindSpore, VastAI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample
from evalkit.errors import UserError
from evalkit.readers._lines import is_image, root_folder


@dataclass
class Options(DatasetOptions):
    layout: str = "imagefolder"
    #: the folder of <wnid>/ folders
    root: Optional[str] = None


def read(options: Options, classes: Classes) -> list[Sample]:
    root = root_folder(options.root, options.name)
    index = {w: i for i, w in enumerate(classes.wnids)}
    samples = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name not in index:
            raise UserError(
                f"{d}: folder name {d.name!r} is not an ImageNet-1k wnid; "
                "the imagefolder layout needs root/<wnid>/*.JPEG (for a flat folder use dataset=labelfile)"
            )
        samples += [Sample(p.stem, p, index[d.name]) for p in sorted(d.iterdir()) if is_image(p)]
    return samples
