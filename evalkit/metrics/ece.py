"""Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks"), as a fraction.

``ece`` is in [0, 1], not percent: the images are put in 15 equal-width bins (lo, hi] of their top-1 softmax
probability (the confidence), and ``ece = sum over bins of |bin| / n * |accuracy(bin) - mean confidence(bin)|``,
the accuracy being the top-1 prediction's. Like ``nll`` it needs every image's logits (else ``ece`` is null with
a note) and leaves out images without a prediction (``ece_skipped``).

Kept per image: the confidence and whether the top-1 is right (never the logits); the sums are taken with
``math.fsum`` at the end, so the result is the same however the images were batched.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evalkit.contract import Classes, DatasetOptions, Scored
from evalkit.metrics.nll import NO_LOGITS, logsumexp

BINS = 15
#: bin i is (EDGES[i], EDGES[i + 1]]
EDGES = np.linspace(0.0, 1.0, BINS + 1)


class ECE:
    def __init__(self) -> None:
        self.confidence: list[np.ndarray] = []
        self.correct: list[np.ndarray] = []
        self.skipped = 0
        self.missing_logits = False

    def update(self, batch: Scored) -> None:
        usable = batch.top[:, 0] != -1
        self.skipped += int((~usable).sum())
        if batch.logits is None:
            self.missing_logits = self.missing_logits or bool(usable.any())
            return
        logits = np.asarray(batch.logits, np.float64)[usable]
        self.confidence.append(np.exp(logits.max(axis=1) - logsumexp(logits)))
        self.correct.append(batch.top[usable, 0] == np.asarray(batch.labels)[usable])

    def result(self) -> dict[str, Any]:
        n = sum(len(part) for part in self.confidence)
        if self.missing_logits or not n:
            note = NO_LOGITS if self.missing_logits else "no image has a prediction"
            return {"ece": None, "ece_note": note, "ece_skipped": self.skipped}
        confidence, correct = np.concatenate(self.confidence), np.concatenate(self.correct)
        bins = np.searchsorted(EDGES, confidence, side="left") - 1
        gaps = [abs(int(correct[bins == b].sum()) - math.fsum(confidence[bins == b])) for b in range(BINS)]
        return {"ece": math.fsum(gaps) / n, "ece_skipped": self.skipped}


def open(classes: Classes, dataset: DatasetOptions) -> ECE:
    return ECE()
