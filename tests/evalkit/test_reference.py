"""The reference rule: a fixed tolerance on the full set, the 95 % CI on a subset, never `ok` on a few images."""

from __future__ import annotations

from scipy.stats import binomtest

from evalkit import reference
from evalkit.config import Reference


def metrics(hits: int, n: int) -> dict:
    """Metrics as the Scorer stores them (top-2..5 equal top-1 here: only top-1 is judged)."""
    ci = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"n": n, **{f"top{k}": 100.0 * hits / n for k in range(1, 6)},
            "top1_ci95": [100.0 * ci.low, 100.0 * ci.high]}


def test_full_set_passes_at_the_tolerance_edge_and_fails_just_below():
    at_edge = metrics(37_315, 50_000)  # 74.630 = 74.83 - 0.2
    assert reference.judge(at_edge, 74.83, 50_000, 0.2) == reference.Verdict(True, "ok")
    below = metrics(37_314, 50_000)  # 74.628
    assert reference.judge(below, 74.83, 50_000, 0.2) == reference.Verdict(False, "below reference")


def test_a_subset_is_not_comparable_even_when_below_the_reference():
    for hits in (180, 140):  # 90 % and 70 %: both intervals reach 74.63
        v = reference.judge(metrics(hits, 200), 74.83, 50_000, 0.2)
        lo, hi = metrics(hits, 200)["top1_ci95"]
        assert v.passed is None
        assert v.status == f"not comparable (n=200, 95 % CI {lo:.3f}–{hi:.3f})"
    assert reference.judge(metrics(2, 4), 74.83, 50_000, 0.2).status == "not comparable (n=4, 95 % CI 15.004–84.996)"


def test_a_subset_significantly_worse_fails():
    assert reference.judge(metrics(2, 200), 74.83, 50_000, 0.2) == reference.Verdict(
        False, "significantly worse (n=200, 95 % CI 0.275–3.572)")
    # even 4 images tell when none is right: the interval's upper bound 48.989 is far below 74.63
    assert reference.judge(metrics(0, 4), 74.83, 50_000, 0.2).passed is False


def test_the_printed_table_never_says_ok_on_a_few_images():
    refs = [Reference(source="timm", top1=74.83, recipe={"size": 224}),
            Reference(source="tf", top1=75.1, recipe={"size": 256}),
            Reference(source="vendor", top1=70.0, applies=False, note="another network")]
    few = metrics(2, 4)
    table = reference.compare(few, refs, {"size": 224})
    assert list(table["applies"]) == [True, False, False]
    assert table["status"][0] == "not comparable (n=4, 95 % CI 15.004–84.996)"
    assert table["status"][1].startswith("other setting: size=224") and table["status"][2].startswith("not this model")
    text = reference.format_table(few, table)
    assert "not comparable (n=4, 95 % CI 15.004–84.996)" in text and " ok" not in text
    full = reference.compare(metrics(37_500, 50_000), refs, {"size": 224})
    assert full["status"][0] == "ok"



def test_a_published_val_number_is_not_compared_with_another_test_set():
    ref = Reference(source="timm", top1=75.0)
    metrics = {"n": 7500, "top1": 2.0, "top5": 10.0, "top1_ci95": [1.7, 2.4]}
    row = reference.compare(metrics, [ref], {}, test_set="imagenet-a").iloc[0]
    assert not row["applies"] and row["status"] == "other test set: imagenet-a (measured on imagenet-val)"
    assert reference.compare(metrics, [ref], {}).iloc[0]["applies"]
