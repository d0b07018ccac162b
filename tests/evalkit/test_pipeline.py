"""The pipeline: identical predictions cold, warm, with one or many workers; the tensor cache's safety."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from evalkit import preprocess
from evalkit.config import compose
from evalkit.dataset import load
from evalkit.errors import UserError
from evalkit.run import evaluate
from evalkit.tensorcache import TensorCache

from .test_cli import imagefolder


def run(onnx, root, tmp_path, name, *extra):
    run_dir = evaluate(compose([f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={root}",
                                f"results.dir={tmp_path / name}", "progress=false", "results.save_logits=true",
                                f"cache.dir={tmp_path / 'tensors'}", *extra]))
    return json.loads((run_dir / "run.json").read_text()), pd.read_csv(run_dir / "predictions.csv"), np.load(run_dir / "logits.npy")


def test_cold_warm_one_and_many_workers_give_identical_predictions(sample_root, lite0_onnx, tmp_path):
    cold = run(lite0_onnx, sample_root, tmp_path, "cold", "workers=2", "dataset.limit=60")
    assert list((tmp_path / "tensors").glob("*.u8"))
    warm = run(lite0_onnx, sample_root, tmp_path, "warm", "workers=2", "dataset.limit=60")
    one = run(lite0_onnx, sample_root, tmp_path, "one", "workers=1", "cache.enabled=false", "dataset.limit=60")
    many = run(lite0_onnx, sample_root, tmp_path, "many", "workers=3", "cache.enabled=false", "runtime.batch_size=7",
               "dataset.limit=60")
    for other in (warm, one, many):
        assert other[1].equals(cold[1])
        assert np.array_equal(other[2], cold[2])
        assert other[0]["metrics"] == cold[0]["metrics"]
        assert other[0]["dataset"]["content_fingerprint"] == cold[0]["dataset"]["content_fingerprint"]


def cache_for(root, tmp_path, family_overrides=()):
    cfg = compose(["dataset=imagefolder", f"dataset.root={root}", *family_overrides])
    samples = load(cfg.dataset)
    recipe = preprocess.build(cfg.preprocess)
    return samples, recipe, (lambda: TensorCache(tmp_path / "tensors", recipe, samples))


def test_cache_rows_equal_the_recipe_and_a_changed_image_is_made_again(lite0_onnx, tmp_path):
    root = imagefolder(tmp_path, n=4)
    run(lite0_onnx, root, tmp_path, "a")
    samples, recipe, open_cache = cache_for(root, tmp_path)
    cache = open_cache()
    assert cache.missing(samples) == []
    fd = os.open(cache.data, os.O_RDONLY)
    try:
        for i, s in enumerate(samples):
            assert np.array_equal(recipe.normalize(cache.read(fd, i)), recipe(s.path.read_bytes()))
    finally:
        os.close(fd)
    time.sleep(0.01)
    samples[2].path.write_bytes(samples[0].path.read_bytes())  # an image replaced in place
    assert open_cache().missing(samples) == [2]


def test_an_interrupted_fill_resumes_with_the_rows_it_lacks(lite0_onnx, tmp_path):
    root = imagefolder(tmp_path, n=5)
    first = run(lite0_onnx, root, tmp_path, "a")
    samples, _, open_cache = cache_for(root, tmp_path)
    cache = open_cache()
    cache.done[[1, 3]] = False  # as if the run was killed before these rows were marked
    cache.save()
    assert open_cache().missing(samples) == [1, 3]
    again = run(lite0_onnx, root, tmp_path, "b")
    assert again[1].equals(first[1]) and open_cache().missing(samples) == []


def test_a_damaged_state_file_means_every_row_is_made_again(lite0_onnx, tmp_path):
    root = imagefolder(tmp_path, n=3)
    run(lite0_onnx, root, tmp_path, "a")
    samples, _, open_cache = cache_for(root, tmp_path)
    open_cache().state_path.write_bytes(b"garbage")
    assert open_cache().missing(samples) == [0, 1, 2]


def test_an_undecodable_image_in_a_worker_is_a_user_error(lite0_onnx, tmp_path):
    root = imagefolder(tmp_path, n=3)
    next(root.glob("*/*.JPEG")).write_bytes(b"\xff\xd8 broken")
    with pytest.raises(UserError, match="cannot decode image"):
        run(lite0_onnx, root, tmp_path, "a")
