"""Top-1 .. top-5 accuracy (%) and the 95 % Wilson interval of top-1: the numbers the published tables give.

Needs only each image's top-5 class indices, so it scores class-index dumps, checkpoints and shards too.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from evalkit.contract import K, Classes, DatasetOptions, Scored


class TopK:
    def __init__(self) -> None:
        self.n = 0
        #: images whose label is at rank k (0-based) of the predictions; index K = not in the top-K
        self.ranks = np.zeros(K + 1, np.int64)

    def update(self, batch: Scored) -> None:
        hit = batch.top[:, :K] == np.asarray(batch.labels)[:, None]
        rank = np.where(hit.any(axis=1), hit.argmax(axis=1), K)
        self.ranks += np.bincount(rank, minlength=K + 1)
        self.n += len(rank)

    def result(self) -> dict[str, Any]:
        if not self.n:
            return {}
        cumulative = np.cumsum(self.ranks[:K])
        metrics: dict[str, Any] = {f"top{k + 1}": 100.0 * float(cumulative[k]) / self.n for k in range(K)}
        metrics["top1_ci95"] = [100.0 * b for b in wilson(int(self.ranks[0]), self.n)]
        return metrics


def wilson(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (what scipy's ``binomtest(...).proportion_ci(method="wilson")``
    gives), in closed form: importing scipy.stats would add a second to every run."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, z2 = hits / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def open(classes: Classes, dataset: DatasetOptions) -> TopK:
    return TopK()
