"""Macro F1 and per-class precision/recall, against a numpy computation on the demo model's real predictions
(sklearn's f1_score with labels = the classes in y_true, average="macro")."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.contract import Scored

from .test_nll import fed, real_batches


def test_f1_macro_equals_an_independent_computation_on_real_predictions(ort_run):
    _, predictions, _ = ort_run
    y, p = predictions["label"].to_numpy(), predictions["pred1"].to_numpy()
    f1, pr = [], {}
    for c in np.unique(y):
        tp, fp, fn = np.sum((p == c) & (y == c)), np.sum((p == c) & (y != c)), np.sum((p != c) & (y == c))
        f1.append(2 * tp / (2 * tp + fp + fn))
        pr[str(c)] = [round(tp / (tp + fp), 4) if tp + fp else 0.0, round(tp / (tp + fn), 4)]
    result = fed("f1_macro", real_batches(ort_run))
    assert result["f1_macro"] == pytest.approx(np.mean(f1), rel=1e-12)
    assert result["precision_recall"] == pr and result["f1_skipped"] == 0


def test_a_class_never_predicted_has_f1_zero_and_unusable_images_are_left_out():
    labels = np.array([1, 1, 2, 2, 2])
    top = np.full((5, 5), -1, np.int32)
    top[:4, 0] = [1, 1, 1, 7]  # class 2: never predicted; class 1: 2 right, 1 false positive; the last: unusable
    result = fed("f1_macro", [Scored(list("abcde"), labels, top)])
    assert result["precision_recall"] == {"1": [0.6667, 1.0], "2": [0.0, 0.0]}
    assert result["f1_macro"] == pytest.approx((2 * 2 / (4 + 1) + 0.0) / 2)
    assert result["f1_skipped"] == 1
