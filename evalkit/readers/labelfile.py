"""A flat folder plus a label file: Caffe/mmcls/Ascend ``name.JPEG 65`` or PaddleClas ``val/name.JPEG 65``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample, read_text
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
    lines = read_text(labels, "dataset.labels").splitlines()
    first = next((ln.split()[0] for ln in lines if ln.strip()), "")
    # PaddleClas lists paths relative to the parent of the image folder ("val/x.JPEG"): that prefix is matched
    # and removed, so every path still resolves inside the root, never beside it.
    prefix = f"{root.name}/"
    if first.startswith(prefix) and not (root / first).exists():
        lines = [ln.strip()[len(prefix):] if ln.strip().startswith(prefix) else ln for ln in lines]
    return parse(lines, root, str(labels), classes)
