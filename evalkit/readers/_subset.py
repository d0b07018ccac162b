"""What ImageNet-A and -R share: wnid folders for some of the 1000 classes, scored over those classes only."""

from __future__ import annotations

import warnings

from evalkit.contract import Classes, DatasetOptions, Sample
from evalkit.readers._common import official_wnids, root_folder, wnid_folders


def read(options: DatasetOptions, classes: Classes, name: str, label: str) -> list[Sample]:
    """The images, warning when the folders are not the set's official classes (a partial or another set)."""
    root = root_folder(options.root, options.name)
    samples = wnid_folders(root, classes, name)
    found, official = {d.name for d in root.iterdir() if d.is_dir()}, official_wnids(name)
    if found - official:
        warnings.warn(f"{root}: {len(found - official)} folders are not {label} classes "
                      f"(e.g. {sorted(found - official)[0]}); they are scored with the rest")
    if official - found:
        warnings.warn(f"{root} has {len(found & official)} of the {len(official)} {label} classes; "
                      "scored over the classes present")
    return samples


def label_space(options: DatasetOptions, classes: Classes) -> list[int]:
    """The classes of the folders: the logits are restricted to them before top-k."""
    index = {w: i for i, w in enumerate(classes.wnids)}
    root = root_folder(options.root, options.name)
    return sorted(index[d.name] for d in root.iterdir() if d.is_dir() and d.name in index)
