"""The top-k metric's confidence interval is scipy's Wilson interval, computed without importing scipy.stats."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from evalkit.metrics.topk import wilson


@pytest.mark.parametrize("n", [1, 2, 7, 200, 1000, 50_000])
def test_wilson_interval_equals_scipys(n):
    for hits in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        want = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = wilson(hits, n)
        assert low == pytest.approx(want.low, abs=1e-12) and high == pytest.approx(want.high, abs=1e-12)
