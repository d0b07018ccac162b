"""ONNX export: dynamic batch, the recipe in the metadata, content-keyed cache, weight checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest

from evalkit import preprocess
from evalkit.config import ModelConfig, compose
from evalkit.errors import UserError
from evalkit.export import RECIPE_KEY, cached_path, export, onnx_file
from evalkit.preprocess import params_dict
from evalkit.weights import resolve

from ..conftest import REPO  # noqa: TID252

torch = pytest.importorskip("torch", reason="export needs evalkit[torch]")


def test_exported_demo_model_carries_its_recipe_and_takes_any_batch(lite0_onnx):
    sess = onnxruntime.InferenceSession(str(lite0_onnx), providers=["CPUExecutionProvider"])
    recipe = json.loads(sess.get_modelmeta().custom_metadata_map[RECIPE_KEY])
    assert recipe == params_dict(compose().preprocess)
    for n in (1, 3):
        (out,) = sess.run(None, {"input": np.zeros((n, 3, 224, 224), np.float32)})
        assert out.shape == (n, 1000)


def test_cached_export_is_reused_and_keyed_by_the_recipe(lite0_onnx, cache_dir):
    cfg = compose([f"cache_dir={cache_dir}"])
    mtime = lite0_onnx.stat().st_mtime_ns
    assert onnx_file(cfg.model, preprocess.build(cfg.preprocess), cache_dir) == lite0_onnx
    assert lite0_onnx.stat().st_mtime_ns == mtime
    other = compose([f"cache_dir={cache_dir}", "preprocess.crop_pct=0.9"])
    weights = resolve(cfg.model)
    assert cached_path(cfg.model, weights, preprocess.build(cfg.preprocess), cache_dir) == lite0_onnx
    assert cached_path(other.model, weights, preprocess.build(other.preprocess), cache_dir) != lite0_onnx


def test_export_checks_the_graph_against_pytorch(tmp_path):
    """A random-weight timm model, as the zoo tests use: the check reports agreement."""
    weights = tmp_path / "w.pth"
    import timm

    torch.save(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict(), weights)
    model = ModelConfig(name="lite0-random", arch="tf_efficientnet_lite0", weights=str(weights))
    figures = export(model, preprocess.build(compose().preprocess), tmp_path / "m.onnx")
    assert figures["max_abs_diff"] < 1e-3 and figures["top1_agreement"] == 100.0
    assert (tmp_path / "m.onnx").is_file() and not list(tmp_path.glob("*.onnx.tmp*"))


def test_weights_that_do_not_fit_the_architecture_are_a_user_error(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    model = ModelConfig(name="x", arch="tf_efficientnet_lite0", weights=str(weights))
    with pytest.raises(UserError, match="does not fit"):
        export(model, preprocess.build(compose().preprocess), tmp_path / "m.onnx")
    assert not list(tmp_path.glob("*.onnx"))


def test_unknown_architecture_is_a_user_error(tmp_path):
    model = ModelConfig(name="x", arch="no_such_arch")
    with pytest.raises(UserError, match="not a timm architecture"):
        export(model, preprocess.build(compose().preprocess), tmp_path / "m.onnx")


def test_export_command_writes_the_file_and_reports_the_check(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "evalkit.export", "model=demo",
                          f"output={tmp_path / 'l0.onnx'}"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "l0.onnx").is_file() and "top-1 agreement 100.0%" in out.stdout


def test_export_command_without_output_is_exit_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "evalkit.export", "model=demo"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "output=OUT.onnx" in out.stderr
