"""The metric contract, checked on every metric registered in the ``evalkit.metrics`` entry points.

A metric is fed batch by batch; how the images are cut into batches must not change its result.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalkit.classes import imagenet1k
from evalkit.contract import GROUPS, K, DatasetOptions, Scored, load, plugins

from .test_runtimes import HEAVY, python

METRICS = sorted(plugins(GROUPS["metric"]))


def scored(n: int, seed: int = 0) -> Scored:
    """n images: logits from a seeded generator, half of the labels at the top-1, some unscored (-1)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, 1000)).astype(np.float32)
    top = np.argsort(-logits, axis=1, kind="stable")[:, :K].astype(np.int32)
    labels = np.where(rng.random(n) < 0.5, top[:, 0], rng.integers(0, 1000, n)).astype(np.int64)
    top[::17] = -1
    return Scored([f"img{i}" for i in range(n)], labels, top, logits)


def rows(batch: Scored, lo: int, hi: int) -> Scored:
    return Scored(batch.ids[lo:hi], batch.labels[lo:hi], batch.top[lo:hi],
                  None if batch.logits is None else batch.logits[lo:hi])


def test_topk_is_registered():
    assert "topk" in METRICS


@pytest.mark.parametrize("name", METRICS)
def test_module_imports_lazily(name):
    out = python(f"""
        import sys
        from evalkit.contract import GROUPS, load
        assert callable(load(GROUPS["metric"], {name!r}).open)
        print([m for m in {HEAVY!r} if m in sys.modules])
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("with_logits", [True, False])
def test_the_result_does_not_depend_on_how_images_are_batched(name, with_logits):
    batch = scored(300)
    if not with_logits:
        batch = Scored(batch.ids, batch.labels, batch.top, None)
    whole, pieces = (load(GROUPS["metric"], name).open(imagenet1k(), DatasetOptions()) for _ in range(2))
    whole.update(batch)
    for lo in range(0, 300, 7):
        pieces.update(rows(batch, lo, lo + 7))
    assert whole.result() == pieces.result()
    json.dumps(whole.result())  # it goes into run.json


def test_topk_counts_a_hit_at_its_rank_and_no_prediction_as_wrong():
    top = np.array([[3, 1, 2, 4, 5], [1, 3, 2, 4, 5], [2, 4, 5, 6, 3], [-1, -1, -1, -1, -1]], np.int32)
    metric = load(GROUPS["metric"], "topk").open(imagenet1k(), DatasetOptions())
    metric.update(Scored(["a", "b", "c", "d"], np.array([3, 3, 3, 3]), top))
    result = metric.result()
    assert [result[f"top{k}"] for k in range(1, 6)] == [25.0, 50.0, 50.0, 50.0, 75.0]
    low, high = result["top1_ci95"]
    assert low < 25.0 < high
