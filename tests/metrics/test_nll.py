"""Mean NLL: scipy's log-softmax on the demo model's real logits, stable on huge logits, null without logits;
and the new metrics land in a real run's run.json."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import log_softmax

from evalkit.classes import imagenet1k
from evalkit.contract import GROUPS, DatasetOptions, Scored, load

from ..conftest import run_in_process  # noqa: TID252

COLUMNS = [f"pred{k}" for k in range(1, 6)]


def fed(name: str, batches: list[Scored]) -> dict:
    metric = load(GROUPS["metric"], name).open(imagenet1k(), DatasetOptions())
    for batch in batches:
        metric.update(batch)
    return metric.result()


def real_batches(ort_run, size: int = 32) -> list[Scored]:
    """The 200 shared photos as the demo model scored them, in batches."""
    _, predictions, logits = ort_run
    labels, top = predictions["label"].to_numpy(), predictions[COLUMNS].to_numpy().astype(np.int32)
    return [Scored(list(predictions["id"][lo:lo + size]), labels[lo:lo + size], top[lo:lo + size],
                   logits[lo:lo + size]) for lo in range(0, len(labels), size)]


def test_nll_equals_scipys_log_softmax_on_real_logits(ort_run):
    _, predictions, logits = ort_run
    labels = predictions["label"].to_numpy()
    want = -log_softmax(logits.astype(np.float64), axis=1)[np.arange(len(labels)), labels].mean()
    result = fed("nll", real_batches(ort_run))
    assert result == {"nll": pytest.approx(want, rel=1e-12), "nll_skipped": 0}
    assert 0 < result["nll"] < 2  # a good model: a top-1 of ~75 % on these photos


def test_huge_logits_do_not_overflow_and_unusable_rows_are_skipped():
    logits = np.array([[1e4, 1e4 - 1, 0.0], [0.0, 1e4, 1e4], [np.nan, np.nan, np.nan]])
    top = np.array([[0, 1, 2, -1, -1], [1, 2, 0, -1, -1], [-1] * 5], np.int32)
    result = fed("nll", [Scored(["a", "b", "c"], np.array([0, 2, 1]), top, logits)])
    want = [math.log1p(math.exp(-1)), math.log(2)]  # -log p(label): the only values the big logits leave
    assert result == {"nll": pytest.approx(sum(want) / 2, rel=1e-12), "nll_skipped": 1}


def test_a_batch_without_logits_leaves_nll_unknown(ort_run):
    batches = real_batches(ort_run)
    batches[3] = Scored(batches[3].ids, batches[3].labels, batches[3].top, None)
    result = fed("nll", batches)
    assert result["nll"] is None and result["nll_note"].startswith("needs logits")


def test_the_metrics_land_in_run_json(tmp_path, sample_root, lite0_onnx):
    run, _ = run_in_process(tmp_path, sample_root, [f"model.onnx={lite0_onnx}", "metrics=[topk,nll,ece,f1_macro,confusion]"],
                            ["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=40"])
    metrics = run["metrics"]
    assert metrics["n"] == 40 and 0 < metrics["nll"] < 5 and 0 <= metrics["ece"] <= 1 and 0 <= metrics["f1_macro"] <= 1
    assert metrics["nll_skipped"] == metrics["ece_skipped"] == metrics["f1_skipped"] == metrics["confusion_skipped"] == 0
    assert set(metrics["precision_recall"]) <= {str(c) for c in range(1000)}
    assert sum(p["count"] for p in metrics["confused_pairs"]) <= 40 - round(metrics["top1"] * 40 / 100)
