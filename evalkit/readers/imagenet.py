"""``dataset=imagenet``: the user's own ILSVRC2012 validation set, wherever it is on this machine.

Its location comes from ``dataset.root``, else the environment variable ``EVALKIT_IMAGENET``, else the user's
config folder (``~/.config/evalkit/dataset/imagenet.yaml``, found on Hydra's search path). The layout is detected:
``<wnid>/`` folders (ImageFolder), or a flat folder with a label file (``dataset.labels``, else ``val.txt`` in the
folder or beside it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample
from evalkit.errors import UserError
from evalkit.readers import imagefolder, labelfile
from evalkit.readers._common import root_folder

ENV = "EVALKIT_IMAGENET"
#: label files a flat folder is looked up with, in the folder and beside it
LABEL_FILES = ("val.txt", "val_list.txt")
WNID = re.compile(r"n\d{8}")
HOW = (f"export {ENV}=/data/imagenet/val (wnid folders, or a flat folder with val.txt), or put root: PATH in "
       "~/.config/evalkit/dataset/imagenet.yaml, or pass dataset.root=PATH")


@dataclass
class Options(DatasetOptions):
    layout: str = "imagenet"
    #: the ILSVRC2012 validation images; the YAML defaults it to $EVALKIT_IMAGENET
    root: Optional[str] = None
    #: a flat folder's label file ("ILSVRC2012_val_00000001.JPEG 65" lines); default: val.txt in or beside root
    labels: Optional[str] = None


def read(options: Options, classes: Classes) -> list[Sample]:
    if not options.root:
        raise UserError(f"dataset=imagenet: where is your ILSVRC2012 validation set? {HOW}")
    root = root_folder(options.root, options.name)
    if any(d.is_dir() and WNID.fullmatch(d.name) for d in root.iterdir()):
        return imagefolder.read(imagefolder.Options(name=options.name, root=str(root)), classes)
    labels = options.labels or next((str(folder / name) for folder in (root, root.parent) for name in LABEL_FILES
                                     if (folder / name).is_file()), None)
    if labels is None:
        raise UserError(f"dataset=imagenet: {root} has no <wnid>/ folders and no label file ({' or '.join(LABEL_FILES)} "
                        "in it or beside it): set dataset.labels=PATH to its 'ILSVRC2012_val_00000001.JPEG 65' list")
    return labelfile.read(labelfile.Options(name=options.name, root=str(root), labels=labels), classes)
