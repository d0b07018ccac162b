"""The scorer against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.errors import UserError
from evalkit.scoring import Scorer


def logits_ranking(order: list[int], classes: int = 1000) -> np.ndarray:
    """Logits whose ranking starts with ``order``."""
    row = np.zeros(classes, dtype=np.float32)
    for rank, c in enumerate(order):
        row[c] = 10.0 - rank
    return row


def test_cumulative_topk_on_hand_computed_batches():
    s = Scorer(["topk"])
    # image a: label at rank 0; b: rank 2; c: rank 4; d: not in top-5
    s.update(["a", "b"], np.array([7, 8]), np.stack([logits_ranking([7, 1, 2]), logits_ranking([1, 2, 8])]))
    s.update(["c", "d"], np.array([9, 10]), np.stack([logits_ranking([1, 2, 3, 4, 9]), logits_ranking([1, 2, 3, 4, 5, 10])]))
    r = s.result()
    assert r.metrics["n"] == 4
    assert [r.metrics[f"top{k}"] for k in range(1, 6)] == [25.0, 25.0, 50.0, 50.0, 75.0]
    assert list(r.predictions["id"]) == ["a", "b", "c", "d"]
    assert list(r.predictions.iloc[1][["pred1", "pred2", "pred3"]]) == [1, 2, 8]
    lo, hi = r.metrics["top1_ci95"]
    assert lo < 25.0 < hi


def test_per_class_accuracy():
    s = Scorer(["topk"])
    s.update(["a", "b", "c"], np.array([3, 3, 4]),
             np.stack([logits_ranking([3]), logits_ranking([4, 3]), logits_ranking([4])]))
    per_class = s.result().per_class.set_index("label")
    assert per_class.loc[3, "n"] == 2 and per_class.loc[3, "top1"] == 50.0 and per_class.loc[3, "top5"] == 100.0
    assert per_class.loc[4, "top1"] == 100.0


def test_1001_class_head_is_shifted_by_the_background_class():
    s = Scorer(["topk"])
    s.update(["a"], np.array([65]), logits_ranking([66], classes=1001)[None])  # index 66 = class 65
    r = s.result()
    assert r.metrics["top1"] == 100.0 and r.metrics["background_class"] is True


def test_ties_rank_the_lower_class_first():
    s = Scorer(["topk"])
    s.update(["a"], np.array([5]), np.zeros((1, 1000), dtype=np.float32))
    assert list(s.result().predictions.iloc[0][["pred1", "pred2"]]) == [0, 1]


@pytest.mark.parametrize("logits,message", [
    (np.zeros((1, 10)), "10 outputs"),
    (np.full((1, 1000), np.nan), "NaN/Inf"),
    (np.zeros((2, 1000)), "for 1 images"),
])
def test_bad_logits_are_user_errors(logits, message):
    with pytest.raises(UserError, match=message):
        Scorer(["topk"]).update(["a"], np.array([0]), logits)


def test_nothing_scored_is_an_error():
    with pytest.raises(UserError, match="no images"):
        Scorer(["topk"]).result()


def test_annotate_names_the_true_class_and_gives_the_top5_probabilities():
    from evalkit.scoring import annotate

    logits = np.stack([logits_ranking([7, 1, 2]), logits_ranking([1, 2, 8])])
    s = Scorer(["topk"])
    s.update(["a", "b"], np.array([7, 8]), logits)
    named = annotate(s.result().predictions)
    assert list(named["wnid"]) == ["n01514668", "n01514859"] and list(named["class_name"]) == ["cock", "hen"]
    assert "prob1" not in named
    probs = annotate(s.result().predictions, logits)
    expected = np.exp(10.0) / (np.exp([10.0, 9.0, 8.0]).sum() + 997)
    assert probs.loc[0, "prob1"] == pytest.approx(expected) and probs.loc[0, "prob1"] > probs.loc[0, "prob2"]
    # a 1001-class head is scored without its background column; classes outside the set get no probability
    with_background = annotate(s.result().predictions, np.concatenate([np.full((2, 1), 50.0), logits], axis=1))
    assert with_background.loc[0, "prob1"] == pytest.approx(expected)
    assert annotate(s.result().predictions, logits, label_space=[1, 2, 7, 8]).loc[0, "prob1"] == pytest.approx(
        np.exp(10.0) / (np.exp([10.0, 9.0, 8.0]).sum() + 1))
