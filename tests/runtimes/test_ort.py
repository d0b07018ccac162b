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


def test_sessions_split_each_batch_and_put_it_back_in_order(tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    one, three = open_ort(onnx, tmp_path, sessions=1), open_ort(onnx, tmp_path, sessions=3, intra_op_threads=1)
    x = np.random.default_rng(2).standard_normal((8, 3, 224, 224), dtype=np.float32)
    assert np.array_equal(three(x), one(x)) and np.array_equal(three(x[:2]), one(x[:2]))  # fewer images than sessions
    assert three.info()["sessions"] == 3 and three.info()["threads_per_session"] == 1
    three.close()
    three.close()


def test_the_default_is_one_single_threaded_session_per_core_and_says_why(tmp_path, monkeypatch):
    from evalkit.runtimes import ort

    monkeypatch.setattr(ort, "cpu_cores", lambda: 4)
    assert ort.plan(Options(), 10 << 20, fixed_batch=False) == (4, 1, "one per core (4)")
    monkeypatch.setattr(ort, "_available_memory", lambda: 2 * (3 * (500 << 20) + (256 << 20)) * 2)
    sessions, threads, why = ort.plan(Options(), 500 << 20, fixed_batch=False)
    assert (sessions, threads) == (2, 2) and "free memory" in why  # a big model: capped by memory
    assert ort.plan(Options(), 10 << 20, fixed_batch=True)[0] == 1


def test_two_single_threaded_sessions_predict_exactly_as_one_on_the_shared_photos(sample_root, lite0_onnx, tmp_path):
    from ..conftest import run_in_process  # noqa: TID252

    one, p1 = run_in_process(tmp_path / "one", sample_root, [f"model.onnx={lite0_onnx}", "runtime.sessions=1"])
    two, p2 = run_in_process(tmp_path / "two", sample_root, [f"model.onnx={lite0_onnx}", "runtime.sessions=2",
                                                             "runtime.intra_op_threads=1"])
    columns = [f"pred{k}" for k in range(1, 6)]
    assert p1[columns].equals(p2[columns]) and one["metrics"] == two["metrics"]
    assert two["runtime"]["info"]["sessions"] == 2
