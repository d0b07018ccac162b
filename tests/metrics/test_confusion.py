"""The most confused class pairs: counted, ordered, named, at most 20."""

from __future__ import annotations

from collections import Counter

import numpy as np

from evalkit.classes import imagenet1k
from evalkit.contract import Scored

from .test_nll import fed, real_batches


def test_pairs_are_counted_ordered_and_named():
    labels = np.array([281, 281, 281, 285, 285, 7, 7])
    top = np.full((7, 5), -1, np.int32)
    top[:6, 0] = [282, 282, 285, 281, 285, 9]  # the last image is unusable
    result = fed("confusion", [Scored(list("abcdefg"), labels, top)])
    names = imagenet1k().names
    assert result["confused_pairs"] == [
        {"true": 281, "predicted": 282, "count": 2, "true_name": names[281], "predicted_name": names[282]},
        {"true": 7, "predicted": 9, "count": 1, "true_name": names[7], "predicted_name": names[9]},
        {"true": 281, "predicted": 285, "count": 1, "true_name": names[281], "predicted_name": names[285]},
        {"true": 285, "predicted": 281, "count": 1, "true_name": names[285], "predicted_name": names[281]},
    ]
    assert result["confusion_skipped"] == 1


def test_real_predictions_give_the_20_most_frequent_mistakes(ort_run):
    _, predictions, _ = ort_run
    wrong = predictions[predictions["pred1"] != predictions["label"]]
    counts = Counter(zip(wrong["label"], wrong["pred1"]))
    result = fed("confusion", real_batches(ort_run))
    pairs = result["confused_pairs"]
    assert len(pairs) == min(20, len(counts))
    assert all(counts[(p["true"], p["predicted"])] == p["count"] for p in pairs)
    assert [p["count"] for p in pairs] == sorted(counts.values(), reverse=True)[:len(pairs)]
