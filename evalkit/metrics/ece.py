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

import numpy as np

from evalkit.contract import Classes, DatasetOptions
from evalkit.metrics._logits import LogitMetric, logsumexp

BINS = 15
#: bin i is (EDGES[i], EDGES[i + 1]]
EDGES = np.linspace(0.0, 1.0, BINS + 1)


class ECE(LogitMetric):
    name = "ece"

    def __init__(self) -> None:
        super().__init__()
        self.confidence: list[np.ndarray] = []
        self.correct: list[np.ndarray] = []

    def add(self, logits: np.ndarray, labels: np.ndarray, top: np.ndarray) -> None:
        self.confidence.append(np.exp(logits.max(axis=1) - logsumexp(logits)))
        self.correct.append(top[:, 0] == labels)

    def value(self) -> float:
        confidence, correct = np.concatenate(self.confidence), np.concatenate(self.correct)
        bins = np.searchsorted(EDGES, confidence, side="left") - 1
        gaps = [abs(int(correct[bins == b].sum()) - math.fsum(confidence[bins == b])) for b in range(BINS)]
        return math.fsum(gaps) / self.n


def open(classes: Classes, dataset: DatasetOptions) -> ECE:
    return ECE()
