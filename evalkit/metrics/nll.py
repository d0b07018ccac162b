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

import numpy as np

from evalkit.contract import Classes, DatasetOptions
from evalkit.metrics._logits import LogitMetric, logsumexp


class NLL(LogitMetric):
    name = "nll"

    def __init__(self) -> None:
        super().__init__()
        #: each usable image's -log p(label), batch by batch (one float per image, never the logits)
        self.values: list[np.ndarray] = []

    def add(self, logits: np.ndarray, labels: np.ndarray, top: np.ndarray) -> None:
        self.values.append(logsumexp(logits) - logits[np.arange(len(labels)), labels])

    def value(self) -> float:
        return math.fsum(chain.from_iterable(self.values)) / self.n


def open(classes: Classes, dataset: DatasetOptions) -> NLL:
    return NLL()
