"""Mean negative log-likelihood of the labels under the softmax of the logits (the cross-entropy loss at eval).

A calibration check that accuracy cannot make: a port that keeps top-1 but flattens or sharpens the logits
(a wrong scale, fp16 saturation) changes it. Needs every image's logits: a class-index dump, or rows that come
back from a checkpoint or shards, have none, and then ``nll`` is null with a note rather than a partial number.
Images without a prediction (unusable) are left out and counted in ``nll_skipped``.

The log-softmax is computed in float64 per image, shifted by the row's maximum; the images' values are summed
with ``math.fsum`` at the end, so the mean is the same however the images were batched.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

import numpy as np

from evalkit.contract import Classes, DatasetOptions, Scored

NO_LOGITS = "needs logits: the runtime gave class indices, or rows came back from a checkpoint or shards"


class NLL:
    def __init__(self) -> None:
        #: each usable image's -log p(label), batch by batch (one float per image, never the logits)
        self.values: list[np.ndarray] = []
        self.skipped = 0
        self.missing_logits = False

    def update(self, batch: Scored) -> None:
        usable = batch.top[:, 0] != -1
        self.skipped += int((~usable).sum())
        if batch.logits is None:
            self.missing_logits = self.missing_logits or bool(usable.any())
            return
        logits = np.asarray(batch.logits, np.float64)[usable]
        labels = np.asarray(batch.labels)[usable]
        self.values.append(logsumexp(logits) - logits[np.arange(len(labels)), labels])

    def result(self) -> dict[str, Any]:
        n = sum(len(part) for part in self.values)
        if self.missing_logits or not n:
            note = NO_LOGITS if self.missing_logits else "no image has a prediction"
            return {"nll": None, "nll_note": note, "nll_skipped": self.skipped}
        return {"nll": math.fsum(chain.from_iterable(self.values)) / n, "nll_skipped": self.skipped}


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp(row))) of each float64 row, shifted by the row's maximum so no exp overflows (-inf logits,
    classes outside a set's label space, contribute nothing)."""
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1))


def open(classes: Classes, dataset: DatasetOptions) -> NLL:
    return NLL()
