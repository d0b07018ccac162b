"""The most confused (true, predicted) class pairs of the top-1 predictions: which mistakes a model (or a port of
it) makes most, by name, so a new failure (every "tabby" now a "tiger cat") shows without a confusion matrix.

``confused_pairs`` lists the ``PAIRS`` most frequent pairs with true != predicted, most frequent first (ties:
by true, then predicted class index), each with both class indices, their names and the count. Images without
a prediction (unusable) are left out and counted in ``confusion_skipped``. Needs only the top-1 indices.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from evalkit.contract import Classes, DatasetOptions, Scored

PAIRS = 20


class Confusion:
    def __init__(self, classes: Classes) -> None:
        self.names = classes.names
        self.pairs: Counter[tuple[int, int]] = Counter()
        self.skipped = 0

    def update(self, batch: Scored) -> None:
        pred = batch.top[:, 0].astype(np.int64)
        usable = pred != -1
        self.skipped += int((~usable).sum())
        wrong = usable & (pred != np.asarray(batch.labels))
        self.pairs.update(zip(np.asarray(batch.labels)[wrong].tolist(), pred[wrong].tolist()))

    def result(self) -> dict[str, Any]:
        ranked = sorted(self.pairs.items(), key=lambda item: (-item[1], item[0]))[:PAIRS]
        return {"confused_pairs": [{"true": t, "predicted": p, "count": n, "true_name": self.names[t],
                                    "predicted_name": self.names[p]} for (t, p), n in ranked],
                "confusion_skipped": self.skipped}


def open(classes: Classes, dataset: DatasetOptions) -> Confusion:
    return Confusion(classes)
