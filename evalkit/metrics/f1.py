"""Macro F1 of the top-1 predictions, with each class's precision and recall: where accuracy hides that a port
hurts a few classes (a class never predicted any more keeps top-1 nearly unchanged but its F1 goes to zero).

Fractions in [0, 1], not percent. The macro average is over the classes present in the labels (a 200-image
sample covers few of the 1000 classes; sklearn's ``f1_score(y, p, labels=<classes in y>, average="macro")``);
a class's F1 is ``2 tp / (2 tp + fp + fn)``, its precision 0 when it was never predicted (sklearn's zero
division). ``precision_recall`` maps each present class index (a string: a JSON key) to ``[precision, recall]``,
rounded to 4 decimals to keep run.json small. Images without a prediction (unusable) are left out and counted in
``f1_skipped``. Needs only the top-1 indices, so class-index dumps, checkpoints and shards are scored too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evalkit.contract import Classes, DatasetOptions, Scored


class F1:
    def __init__(self, classes: int) -> None:
        #: per class: images labelled with it, images predicted as it, and both
        self.true = np.zeros(classes, np.int64)
        self.predicted = np.zeros(classes, np.int64)
        self.hits = np.zeros(classes, np.int64)
        self.skipped = 0

    def update(self, batch: Scored) -> None:
        pred = batch.top[:, 0].astype(np.int64)
        usable = pred != -1
        self.skipped += int((~usable).sum())
        labels, pred = np.asarray(batch.labels)[usable], pred[usable]
        size = len(self.true)
        self.true += np.bincount(labels, minlength=size)
        self.predicted += np.bincount(pred, minlength=size)
        self.hits += np.bincount(labels[labels == pred], minlength=size)

    def result(self) -> dict[str, Any]:
        present = np.flatnonzero(self.true)
        if not len(present):
            return {"f1_macro": None, "f1_skipped": self.skipped}
        tp, true, predicted = self.hits[present], self.true[present], self.predicted[present]
        f1 = [2 * int(t) / int(n) for t, n in zip(tp, true + predicted)]
        return {
            "f1_macro": math.fsum(f1) / len(f1),
            "precision_recall": {str(c): [round(int(t) / int(p), 4) if p else 0.0, round(int(t) / int(n), 4)]
                                 for c, t, p, n in zip(present, tp, predicted, true)},
            "f1_skipped": self.skipped,
        }


def open(classes: Classes, dataset: DatasetOptions) -> F1:
    return F1(len(classes))
