"""Top-1 .. top-5 accuracy (%) and the 95 % Wilson interval of top-1: the numbers the published tables give.

Needs only each image's top-5 class indices, so it scores class-index dumps, checkpoints and shards too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalkit.contract import K, Classes, Scored


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
        from scipy.stats import binomtest

        if not self.n:
            return {}
        cumulative = np.cumsum(self.ranks[:K])
        metrics: dict[str, Any] = {f"top{k + 1}": 100.0 * float(cumulative[k]) / self.n for k in range(K)}
        ci = binomtest(int(self.ranks[0]), self.n).proportion_ci(confidence_level=0.95, method="wilson")
        metrics["top1_ci95"] = [100.0 * ci.low, 100.0 * ci.high]
        return metrics


def open(classes: Classes) -> TopK:
    return TopK()
