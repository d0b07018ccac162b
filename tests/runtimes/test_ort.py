"""The ONNX Runtime adapter on real ONNX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evalkit import preprocess
from evalkit.config import ModelConfig
from evalkit.errors import UserError
from evalkit.plugins import make_context, open_runtime
from evalkit.preprocess.timm import Params
from evalkit.runtimes.ort import Options

from ..conftest import tiny_onnx  # noqa: TID252


def open_ort(onnx: Path, tmp_path: Path, **options):
    model = ModelConfig(name="m", arch="none", onnx=str(onnx))
    return open_runtime(Options(**options), make_context(model, preprocess.build(Params()), tmp_path))


def test_dynamic_batch_model_reports_its_shapes_and_runs_any_batch(tmp_path):
    rt = open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path)
    assert rt.fixed_batch is None and rt.input_shape == (3, 224, 224) and rt.num_outputs == 1000
    x = np.random.default_rng(0).standard_normal((5, 3, 224, 224), dtype=np.float32)
    logits = rt(x)
    assert logits.shape == (5, 1000) and logits.dtype == np.float32
    assert np.allclose(logits[:2], rt(x[:2]), atol=1e-5)
    assert rt.info()["providers"] == ["CPUExecutionProvider"] and len(rt.info()["model_sha256"]) == 64


def test_fixed_batch_pads_and_trims(tmp_path):
    fixed = open_ort(tiny_onnx(tmp_path / "f.onnx", batch=4), tmp_path)
    dynamic = open_ort(tiny_onnx(tmp_path / "d.onnx"), tmp_path)
    x = np.random.default_rng(1).standard_normal((3, 3, 224, 224), dtype=np.float32)
    assert fixed.fixed_batch == 4
    assert np.allclose(fixed(x), dynamic(x), atol=1e-5)


def test_thread_counts_are_accepted(tmp_path):
    rt = open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path, intra_op_threads=1, inter_op_threads=1)
    assert rt(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 1000)


def test_unavailable_provider_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not in this onnxruntime build"):
        open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path, providers=["NoSuchExecutionProvider"])


def test_a_file_that_is_not_onnx_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load"):
        open_ort(bad, tmp_path)


def test_model_without_onnx_or_weights_says_what_to_pass(tmp_path):
    model = ModelConfig(name="m", arch="none")
    with pytest.raises(UserError, match="model.onnx=PATH"):
        open_runtime(Options(), make_context(model, preprocess.build(Params()), tmp_path))


def test_unknown_runtime_is_a_user_error(tmp_path):
    opts = Options()
    opts.name = "nope"
    with pytest.raises(UserError, match="unknown runtime"):
        open_runtime(opts, make_context(ModelConfig(name="m", arch="none"), preprocess.build(Params()), tmp_path))
