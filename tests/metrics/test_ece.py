"""ECE: Guo et al.'s 15-bin estimate, as a straightforward reimplementation computes it on real logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax

from evalkit.contract import Scored

from .test_nll import fed, real_batches


def reference_ece(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """The loop of Guo et al.'s temperature_scaling.py (_ECELoss), in numpy."""
    probabilities = softmax(logits.astype(np.float64), axis=1)
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return ece


def test_ece_equals_a_reimplementation_on_real_logits(ort_run):
    _, predictions, logits = ort_run
    want = reference_ece(logits, predictions["label"].to_numpy())
    result = fed("ece", real_batches(ort_run))
    assert result == {"ece": pytest.approx(want, rel=1e-9), "ece_skipped": 0}
    assert 0 < result["ece"] < 0.5


def test_ece_is_a_fraction_of_one_bin_gap():
    """Two images at confidence 0.75 in bin (0.733, 0.8], one right: |0.5 - 0.75| = 0.25; an unusable one skipped."""
    logits = np.array([[math.log(3), 0.0], [math.log(3), 0.0], [0.0, 0.0]])
    top = np.array([[0, 1, -1, -1, -1], [0, 1, -1, -1, -1], [-1] * 5], np.int32)
    result = fed("ece", [Scored(["a", "b", "c"], np.array([0, 1, 0]), top, logits)])
    assert result == {"ece": pytest.approx(0.25, rel=1e-12), "ece_skipped": 1}


def test_ece_without_logits_is_unknown():
    top = np.array([[0, 1, 2, 3, 4]], np.int32)
    result = fed("ece", [Scored(["a"], np.array([0]), top, None)])
    assert result["ece"] is None and result["ece_note"].startswith("needs logits")
