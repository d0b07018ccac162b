"""Comparison statistics against hand-computed cases, plots and the HTML report."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit import compare, record
from evalkit.scoring import Scorer


def make_run(results, name: str, labels: list[int], pred1: list[int], logits: np.ndarray | None = None,
             runtime: str = "ort", family: str = "timm"):
    """A run directory whose images have these labels and top-1 predictions."""
    scorer = Scorer(["topk"])
    top = np.array([[p, *[(p + k) % 1000 for k in range(1, 5)]] for p in pred1])
    ids = [f"img{i:03d}" for i in range(len(labels))]
    scorer.update_topk(ids, np.array(labels), top)
    result = scorer.result()
    run = {"id": name, "model": {"name": "m"}, "runtime": {"name": runtime}, "recipe": {"family": family},
           "metrics": result.metrics, "reference": {"rows": [{"status": "ok", "source": "paper", "ref_top1": 50.0}]},
           "timing": {"images_per_s": 100.0}}
    return record.write(results, name, record.RunRecord.from_dict(run), result, logits)


@pytest.fixture
def labels():
    return list(range(20))


def test_identical_runs_agree_fully_and_mcnemar_is_one(tmp_path, labels):
    logits = np.random.default_rng(0).standard_normal((20, 1000)).astype(np.float32)
    a = make_run(tmp_path, "a", labels, labels, logits)
    b = make_run(tmp_path, "b", labels, labels, logits, runtime="torch")
    runs = compare.load([a, b])
    assert compare.agreement(runs).to_numpy().min() == 100.0
    assert compare.mcnemar(a, b) == {"only_a_right": 0, "only_b_right": 0, "p_value": 1.0}
    assert compare.bootstrap_diff(a, b) == {"diff": 0.0, "low": 0.0, "high": 0.0}
    assert compare.logit_stats(a, b) == {"max_abs_diff": 0.0, "mean_cosine": pytest.approx(1.0), "min_cosine": pytest.approx(1.0)}
    assert compare.disagreements(a, b).empty


def test_known_flips_give_the_exact_mcnemar_p_value(tmp_path, labels):
    a = make_run(tmp_path, "a", labels, labels)                                        # all right
    b = make_run(tmp_path, "b", labels, [(x + 1) if i < 3 else x for i, x in enumerate(labels)])  # 3 wrong
    m = compare.mcnemar(a, b)
    assert (m["only_a_right"], m["only_b_right"]) == (3, 0)
    assert m["p_value"] == pytest.approx(2 * 0.5 ** 3)                                 # 0.25
    c = make_run(tmp_path, "c", labels, [(x + 1) if i < 5 else x for i, x in enumerate(labels)])  # 5 wrong
    d = make_run(tmp_path, "d", labels, [(x + 1) if i == 19 else x for i, x in enumerate(labels)])  # 1 other wrong
    m = compare.mcnemar(d, c)
    assert (m["only_a_right"], m["only_b_right"]) == (5, 1)
    assert m["p_value"] == pytest.approx(2 * (1 + 6) / 2 ** 6)                         # 0.21875
    assert compare.agreement(compare.load([a, b])).iloc[0, 1] == pytest.approx(85.0)
    flips = compare.disagreements(a, b)
    assert list(flips["id"]) == ["img000", "img001", "img002"] and flips["a_right"].all() and not flips["b_right"].any()


def test_bootstrap_interval_contains_the_observed_difference(tmp_path, labels):
    a = make_run(tmp_path, "a", labels, labels)
    b = make_run(tmp_path, "b", labels, [(x + 1) if i < 4 else x for i, x in enumerate(labels)])
    ci = compare.bootstrap_diff(a, b, seed=1)
    assert ci["diff"] == pytest.approx(20.0) and ci["low"] <= 20.0 <= ci["high"] and ci["low"] >= 0.0


def test_table_plots_and_html_report(tmp_path, labels):
    a = make_run(tmp_path, "a", labels, labels)
    b = make_run(tmp_path, "b", labels, [(x + 1) if i < 2 else x for i, x in enumerate(labels)], family="mmcls")
    runs = compare.load([a, b])
    side = compare.table(runs)
    assert side[("ort / timm", "top1")]["m"] == 100.0 and side[("ort / mmcls", "top1")]["m"] == 90.0
    for plot, arg, name in ((compare.plot_accuracy, runs, "acc.png"), (compare.plot_agreement, compare.agreement(runs), "agree.png"),
                            (compare.plot_accuracy_vs_throughput, runs, "speed.png")):
        plot(arg, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    page = compare.report([a, b], tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "McNemar" in page and "ort / mmcls" in page
