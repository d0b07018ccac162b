"""Sharded runs merge to exactly the unsharded run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from evalkit import history
from evalkit.config import compose
from evalkit.errors import UserError
from evalkit.merge import last_sweep_shards, main, merge
from evalkit.run import evaluate


def run(lite0_onnx, sample_root, results, *extra):
    return evaluate(compose([f"model.onnx={lite0_onnx}", "dataset=imagefolder", f"dataset.root={sample_root}",
                             f"results.dir={results}", "results.save_logits=true", "progress=false", *extra]))


def test_three_shards_merge_to_the_unsharded_metrics_and_predictions(sample_root, lite0_onnx, tmp_path):
    whole = run(lite0_onnx, sample_root, tmp_path / "whole")
    shards = [run(lite0_onnx, sample_root, tmp_path / "shards", "dataset.num_shards=3", f"dataset.shard={i}")
              for i in (2, 0, 1)]
    sizes = [json.loads((s / "run.json").read_text())["metrics"]["n"] for s in shards]
    assert sorted(sizes) == [66, 67, 67]
    merged = merge(shards, tmp_path / "shards", tmp_path / "shards" / "history.sqlite")
    a, b = (json.loads((d / "run.json").read_text()) for d in (whole, merged))
    assert a["metrics"] == b["metrics"]
    assert pd.read_csv(whole / "predictions.csv").equals(pd.read_csv(merged / "predictions.csv"))
    assert pd.read_csv(whole / "per_class.csv").equals(pd.read_csv(merged / "per_class.csv"))
    assert a["dataset"]["list_fingerprint"] == b["dataset"]["list_fingerprint"]
    assert a["reference"] == b["reference"]  # measured on the whole, not copied from a shard
    assert len(b["merged_from"]) == 3


def test_incomplete_or_mixed_shards_are_refused(sample_root, lite0_onnx, tmp_path):
    shards = [run(lite0_onnx, sample_root, tmp_path / "r", "dataset.num_shards=2", f"dataset.shard={i}", "dataset.limit=10")
              for i in (0, 1)]
    with pytest.raises(UserError, match=r"need shards 0..1 once each"):
        merge(shards[:1], tmp_path / "r", None)
    other = run(lite0_onnx, sample_root, tmp_path / "r", "dataset.num_shards=2", "dataset.shard=1", "dataset.limit=12")
    with pytest.raises(UserError, match="sample list they were cut from"):
        merge([shards[0], other], tmp_path / "r", None)


def test_shard_index_out_of_range_is_a_user_error(sample_root, lite0_onnx, tmp_path):
    with pytest.raises(UserError, match=r"dataset.shard=3 is out of range: must be in 0\.\.2"):
        run(lite0_onnx, sample_root, tmp_path / "r", "dataset.num_shards=3", "dataset.shard=3")


def test_the_merged_run_lists_the_bad_images_of_every_shard(sample_root, lite0_onnx, tmp_path):
    root = tmp_path / "val"
    photos = sorted(sample_root.glob("*/*.JPEG"))[:10]
    for photo in photos:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        (root / photo.parent.name / photo.name).symlink_to(photo)
    broken = [photos[1], photos[8]]  # one in each of two shards
    for photo in broken:
        (root / photo.parent.name / photo.name).unlink()
        (root / photo.parent.name / photo.name).write_bytes(b"not a jpeg")
    shards = [run(lite0_onnx, root, tmp_path / "r", "dataset.num_shards=2", f"dataset.shard={i}",
                  "dataset.bad_images=count_wrong") for i in (0, 1)]
    merged = json.loads((merge(shards, tmp_path / "r", None) / "run.json").read_text())
    assert merged["bad_images"]["count"] == 2
    assert sorted(merged["bad_images"]["examples"]) == sorted(p.stem for p in broken)


def test_merge_last_sweep_names_a_missing_shard_then_merges_the_sweep(sample_root, lite0_onnx, tmp_path):
    results = tmp_path / "r"
    common = [f"model.onnx={lite0_onnx}", "dataset=imagefolder", f"dataset.root={sample_root}",
              f"results.dir={results}", "results.save_logits=true", "progress=false", "dataset.limit=10",
              "dataset.num_shards=2"]  # logits like the whole run's: both predictions.csv carry prob1..prob5
    points = {i: [*common, f"dataset.shard={i}"] for i in (0, 1)}
    sweep_dir = results / ".sweeps" / "20260101T000000"
    history.plan_sweep(sweep_dir, points, {i: f"5_{i}" for i in points})
    history.point_done(sweep_dir, 0, evaluate(compose(points[0]), sweep=sweep_dir.name))
    with pytest.raises(UserError, match=r"no run of point 1 \(dataset.shard=1; SLURM job 5_1\).*resume=true"):
        last_sweep_shards(results)
    history.point_done(sweep_dir, 1, evaluate(compose(points[1]), sweep=sweep_dir.name))
    main(["--last-sweep", "--results", str(results)])
    whole = run(lite0_onnx, sample_root, tmp_path / "whole", "dataset.limit=10")
    [merged] = [p.parent for p in results.glob("*/run.json") if "merged_from" in json.loads(p.read_text())]
    assert pd.read_csv(whole / "predictions.csv").equals(pd.read_csv(merged / "predictions.csv"))
    assert json.loads((merged / "run.json").read_text())["sweep"] == sweep_dir.name
