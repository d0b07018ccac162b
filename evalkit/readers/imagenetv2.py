"""ImageNetV2 (matched frequency and the other two): folders named by class index, ``root/0`` .. ``root/999``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample, warn_skipped
from evalkit.errors import UserError
from evalkit.readers._common import images_in, root_folder


@dataclass
class Options(DatasetOptions):
    layout: str = "imagenetv2"
    #: the folder of 0/ .. 999/ folders
    root: Optional[str] = None


def read(options: Options, classes: Classes) -> list[Sample]:
    root = root_folder(options.root, options.name)
    samples: list[Sample] = []
    skipped: dict[str, str] = {}
    for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name):
        if not (d.name.isdigit() and 0 <= int(d.name) < len(classes)):
            raise UserError(f"{d}: folder name {d.name!r} is not a class index 0..{len(classes) - 1}; ImageNetV2 "
                            "folders are named by class index (for wnid folders use dataset=imagefolder)")
        samples += [Sample(p.stem, p, int(d.name)) for p in images_in(d, skipped)]
    warn_skipped(skipped)
    return samples
