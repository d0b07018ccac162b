"""ImageNet-ReaL ("Are we done with ImageNet?"): top-1/top-5 against the reassessed label sets, as timm's
``RealLabelsImagenet`` scores them: an image whose set is empty is left out; top-k is right when any of
the first k predictions is in the set. Images are matched to real.json by file name, never by position.
Inert (no keys) unless ``dataset.real_labels`` names the real.json.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.contract import K, Classes, DatasetOptions, Scored, parse_json, read_text
from evalkit.errors import UserError

#: ILSVRC2012 validation images are named by their 1-based position in the label list
VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})$")
VAL_IMAGES = 50_000


def load_labels(path: str) -> list[list[int]]:
    """real.json: 50,000 lists of class indices; anything else is a UserError naming the file."""
    try:
        text = read_text(Path(path).expanduser(), "dataset.real_labels")
    except OSError as e:
        raise UserError(f"dataset.real_labels={path}: {e.strerror}") from e
    labels = parse_json(text, f"dataset.real_labels={path} (use the real.json of "
                              "github.com/google-research/reassessed-imagenet)")
    if not isinstance(labels, list) or len(labels) != VAL_IMAGES or not all(
            isinstance(row, list) and all(isinstance(c, int) and 0 <= c < 1000 for c in row) for row in labels):
        raise UserError(f"dataset.real_labels={path} is not real.json: expected a list of {VAL_IMAGES} lists of "
                        "class indices 0..999")
    return labels


class Real:
    def __init__(self, labels: list[list[int]]) -> None:
        self.labels = labels
        #: images with a non-empty set, and those right at rank k (0-based) or better
        self.n = 0
        self.hits = np.zeros(K, np.int64)

    def update(self, batch: Scored) -> None:
        for image, top in zip(batch.ids, batch.top):
            match = VAL_NAME.match(image)
            if not match or not 1 <= int(match.group(1)) <= VAL_IMAGES:
                raise UserError(f"dataset.real_labels scores ILSVRC2012 validation images by file name; {image!r} is "
                                "not one (ILSVRC2012_val_00000001 .. ILSVRC2012_val_00050000)")
            real = self.labels[int(match.group(1)) - 1]
            if not real:
                continue
            self.n += 1
            right = np.isin(top[:K], real)
            if right.any():
                self.hits[int(right.argmax()):] += 1

    def result(self) -> dict[str, Any]:
        if not self.n:
            return {"real_n": 0}
        return {"real_top1": 100.0 * float(self.hits[0]) / self.n, "real_top5": 100.0 * float(self.hits[K - 1]) / self.n,
                "real_n": self.n}


class Inert:
    """No real.json configured: no keys."""

    def update(self, batch: Scored) -> None:
        pass

    def result(self) -> dict[str, Any]:
        return {}


def open(classes: Classes, dataset: DatasetOptions) -> Real | Inert:
    return Real(load_labels(dataset.real_labels)) if dataset.real_labels else Inert()
