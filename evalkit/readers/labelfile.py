"""A flat folder plus a label file: Caffe/mmcls/Ascend ``name.JPEG 65`` or PaddleClas ``val/name.JPEG 65``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample
from evalkit.errors import UserError
from evalkit.readers._common import parse, root_folder


@dataclass
class Options(DatasetOptions):
    layout: str = "labelfile"
    #: the folder of images
    root: Optional[str] = None
    #: lines "ILSVRC2012_val_00000001.JPEG 65", paths relative to root (or to its parent: PaddleClas)
    labels: Optional[str] = None


def read(options: Options, classes: Classes) -> list[Sample]:
    root = root_folder(options.root, options.name)
    if not options.labels:
        raise UserError("dataset.labels=PATH is needed: a file of 'ILSVRC2012_val_00000001.JPEG 65' lines")
    labels = Path(options.labels).expanduser()
    if not labels.is_file():
        raise UserError(f"dataset.labels={options.labels}: no such file")
    lines = labels.read_text().splitlines()
    first = next((ln.split()[0] for ln in lines if ln.strip()), "")
    # PaddleClas lists paths relative to the parent of the image folder ("val/x.JPEG").
    base = root.parent if first and not (root / first).exists() and (root.parent / first).exists() else root
    return parse(lines, base, str(labels), classes)
