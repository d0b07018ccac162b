"""Comparison statistics against hand-computed cases, plots and the HTML report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalkit import compare, pages, record
from evalkit.errors import UserError
from evalkit.scoring import Scorer


def make_run(results, name: str, labels: list[int], pred1: list[int], logits: np.ndarray | None = None,
             runtime: str = "ort", family: str = "timm", params: dict | None = None, precision: str = "fp32",
             images_per_s: float = 100.0):
    """A run directory whose images have these labels and top-1 predictions."""
    scorer = Scorer(["topk"])
    top = np.array([[p, *[(p + k) % 1000 for k in range(1, 5)]] for p in pred1])
    ids = [f"img{i:03d}" for i in range(len(labels))]
    scorer.update_topk(ids, np.array(labels), top)
    result = scorer.result()
    run = {"id": name, "model": {"name": "m"}, "runtime": {"name": runtime, "info": {"executed_precision": precision}},
           "recipe": {"family": family, "params": {"family": family, "crop_pct": 0.875, **(params or {})}},
           "config": {"precision": {"name": precision}}, "dataset": {"name": "imagefolder", "list_fingerprint": "f"},
           "metrics": result.metrics, "reference": {"rows": [{"status": "ok", "source": "paper", "ref_top1": 50.0}]},
           "timing": {"images_per_s": images_per_s}}
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
    assert list(side.columns) == ["timm", "mmcls"]
    assert side.loc["top1", "timm"] == 100.0 and side.loc["top1", "mmcls"] == 90.0
    for plot, arg, name in ((compare.plot_accuracy, runs, "acc.png"), (compare.plot_agreement, compare.agreement(runs), "agree.png"),
                            (compare.plot_accuracy_vs_throughput, runs, "speed.png")):
        plot(arg, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    page = compare.report([a, b], tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "McNemar" in page and "mmcls" in page
    assert page.count("<tr class=flip>") == 2 and "no picture" in page  # these runs recorded no image paths


def four_runs(tmp_path, labels):
    """Issue 28's four runs: fp32, the same model with another recipe (crop_pct=1.0, bilinear), int8, and PyTorch."""
    flip = lambda n: [(x + 1) if i < n else x for i, x in enumerate(labels)]  # noqa: E731
    return [make_run(tmp_path, "fp32", labels, labels, images_per_s=100.0),
            make_run(tmp_path, "recipe", labels, flip(3), params={"crop_pct": 1.0, "interpolation": "bilinear"},
                     images_per_s=100.0),
            make_run(tmp_path, "int8", labels, flip(1), precision="int8", images_per_s=140.0),
            make_run(tmp_path, "torch", labels, flip(2), runtime="torch", images_per_s=60.0)]


def test_runs_that_differ_only_in_their_recipe_get_labels_of_their_own(tmp_path, labels):
    paths = four_runs(tmp_path, labels)
    runs = compare.load(paths)
    assert list(runs["label"]) == ["ort, fp32, crop_pct=0.875, interpolation=default",
                                   "ort, fp32, crop_pct=1.0, interpolation=bilinear",
                                   "ort, int8, crop_pct=0.875, interpolation=default",
                                   "torch, fp32, crop_pct=0.875, interpolation=default"]
    side = compare.table(runs)
    assert list(side.loc["top1"]) == [100.0, 85.0, 95.0, 90.0]  # each column its own run's numbers
    assert list(side.loc["delta_top1"]) == [50.0, 35.0, 45.0, 40.0]
    assert compare.agreement(runs).shape == (4, 4)
    versus = compare.versus(runs, baseline=paths[0])
    assert list(versus["label"]) == list(runs["label"]) and list(versus["flips"]) == [0, 3, 1, 2]
    assert len(compare.plot_accuracy(runs).axes[0].patches) == 4


def test_the_run_id_is_the_last_resort(tmp_path, labels):
    a, b = make_run(tmp_path, "a", labels, labels), make_run(tmp_path, "b", labels, labels)
    assert list(compare.load([a, b])["label"]) == ["ort, fp32, a", "ort, fp32, b"]
    with pytest.raises(UserError, match="given twice"):
        compare.load([a, a])


def test_disagreements_name_the_classes_and_the_top5_probabilities(tmp_path, labels):
    logits = np.full((20, 1000), -5.0, np.float32)
    logits[np.arange(20), labels] = 5.0
    a = make_run(tmp_path, "a", labels, labels, logits)
    predictions = pd.read_csv(a / "predictions.csv")
    predictions["prob1"] = 0.9
    for k in range(2, 6):
        predictions[f"prob{k}"] = 0.01
    predictions.to_csv(a / "predictions.csv", index=False)
    b = make_run(tmp_path, "b", labels, [1] + labels[1:])
    flips = compare.disagreements(a, b)
    assert list(flips[["id", "wnid", "class_name", "pred_a", "pred_b"]].iloc[0]) == ["img000", "n01440764", "tench", 0, 1]
    assert flips["top5_a"].iloc[0].startswith("tench 90.0%; goldfish 1.0%")
    assert flips["top5_b"].iloc[0].startswith("goldfish; great_white_shark")  # b kept no logits
    changes = compare.class_changes(a, b)
    assert list(changes[["wnid", "delta", "lost"]].iloc[0]) == ["n01440764", -100.0, 1]


def test_plots_keep_every_label_inside_and_apart(tmp_path, labels):
    """Long labels (four runs) are wrapped, nothing drawn reaches past the figure's edge, the bars' labels do not
    overlap, and the figures fit the page's width."""
    runs = compare.load(four_runs(tmp_path, labels))
    for fig in (compare.plot_accuracy(runs), compare.plot_agreement(compare.agreement(runs)),
                compare.plot_accuracy_vs_throughput(runs)):
        assert fig.get_figwidth() * pages.DPI <= pages.WIDTH_PX
        fig.canvas.draw()
        drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, everything drawn
        assert drawn.x0 >= 0 and drawn.y0 >= 0 and drawn.x1 <= fig.get_figwidth() and drawn.y1 <= fig.get_figheight()
        ticks = [t.get_window_extent() for t in fig.axes[0].get_xticklabels()]
        assert not any(ticks[i].overlaps(ticks[i + 1]) for i in range(len(ticks) - 1))


def test_the_command_line_gives_the_tables_the_page_and_the_csv(tmp_path, labels, capsys):
    paths = four_runs(tmp_path, labels)
    compare.main([*map(str, paths), "--baseline", "int8", "--html", str(tmp_path / "c.html"), "--csv", str(tmp_path / "csv")])
    out = capsys.readouterr().out
    assert "mcnemar_p" in out and "wrote 10 CSV files" in out
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == [
        "agreement.csv", "classes-fp32.csv", "classes-recipe.csv", "classes-torch.csv", "flips-fp32.csv",
        "flips-recipe.csv", "flips-torch.csv", "runs.csv", "side_by_side.csv", "versus.csv"]
    assert list(pd.read_csv(tmp_path / "csv" / "flips-recipe.csv")["id"]) == ["img001", "img002"]  # both flip img000 alike
    with pytest.raises(SystemExit) as stop:
        compare.main([*map(str, paths), "--baseline", "nope"])
    assert stop.value.code == 2 and "--baseline nope: not one of the runs compared" in capsys.readouterr().err
