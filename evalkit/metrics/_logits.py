"""What the metrics that need every image's logits share: the rows they may use, and saying when they had none."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalkit.contract import Scored

NO_LOGITS = "needs logits: the runtime gave class indices, or rows came back from a checkpoint or shards"


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp(row))) of each float64 row, shifted by the row's maximum so no exp overflows (-inf logits,
    classes outside a set's label space, contribute nothing)."""
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1))


class LogitMetric:
    """Feeds ``add`` the usable rows (a prediction, float64 logits); counts the unusable ones in ``<name>_skipped``
    and, when any batch with usable rows came without logits, makes the result null with a note."""

    #: the result's key
    name = ""

    def __init__(self) -> None:
        self.n = 0
        self.skipped = 0
        self.missing_logits = False

    def update(self, batch: Scored) -> None:
        usable = batch.top[:, 0] != -1
        self.skipped += int((~usable).sum())
        if batch.logits is None:
            self.missing_logits = self.missing_logits or bool(usable.any())
            return
        self.n += int(usable.sum())
        self.add(np.asarray(batch.logits, np.float64)[usable], np.asarray(batch.labels)[usable], batch.top[usable])

    def add(self, logits: np.ndarray, labels: np.ndarray, top: np.ndarray) -> None:
        raise NotImplementedError

    def value(self) -> float:
        raise NotImplementedError

    def result(self) -> dict[str, Any]:
        skipped = {f"{self.name}_skipped": self.skipped}
        if self.missing_logits or not self.n:
            note = NO_LOGITS if self.missing_logits else "no image has a prediction"
            return {self.name: None, f"{self.name}_note": note, **skipped}
        return {self.name: self.value(), **skipped}
