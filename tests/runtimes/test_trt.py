"""TensorRT runtime: GPU-free parts everywhere; engine builds and accuracy where TensorRT and a GPU exist."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import numpy as np
import pytest

from evalkit.errors import UserError
from evalkit.contract import Runtime
from evalkit.runtimes._cuda import open_cuda
from evalkit.runtimes.trt import PRECISIONS, Options, check_version, engine_key, onnx_facts

from ..conftest import run_cli, run_in_process, tiny_onnx  # noqa: TID252

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_engine_key_changes_with_everything_that_changes_the_engine():
    base = dict(onnx_sha256="a" * 64, trt_version="10.12.0.36", gpu="NVIDIA H100", compute_capability="9.0",
                options=Options(), input_shape=(3, 224, 224), precision="fp32")
    key = engine_key(**base)
    assert key == engine_key(**base)
    for change in [dict(onnx_sha256="b" * 64), dict(trt_version="11.1.0.106"), dict(gpu="NVIDIA A100"),
                   dict(compute_capability="8.0"), dict(options=Options(batch_size=8)),
                   dict(options=Options(workspace_mib=1024)), dict(input_shape=(3, 256, 256)),
                   dict(precision="fp16")]:
        assert engine_key(**{**base, **change}) != key, change
    # what is measured after the build does not change the engine
    assert engine_key(**{**base, "options": Options(latency_batches=[1], latency_iters=3)}) == key


def test_precision_is_no_runtime_option_any_more():
    """The core transforms the ONNX to ``precision=``; the runtime only declares what it can run."""
    assert PRECISIONS == ("fp32", "fp16", "int8")
    assert {f.name for f in dataclasses.fields(Options)} == {
        "name", "batch_size", "workspace_mib", "latency_batches", "latency_iters"}
    with pytest.raises(TypeError, match="precision"):
        Options(precision="fp16")


@pytest.mark.parametrize("version", ["10.12.0.36", "10.13.3.9", "11.0.0.114", "11.1.0.106"])
def test_supported_tensorrt_versions_pass(version):
    check_version(version)


@pytest.mark.parametrize("version", ["10.11.0.33", "10.7.0", "8.6.1", "x.y"])
def test_an_older_tensorrt_is_a_user_error_naming_the_supported_range(version):
    with pytest.raises(UserError, match=r"tensorrt>=10\.12,<12"):
        check_version(version)


def test_onnx_facts_read_the_metadata_and_the_precision_the_types_make(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    path = tiny_onnx(tmp_path / "fp32.onnx")
    model = onnx.load(path)
    helper.set_model_props(model, {"evalkit.recipe": '{"family": "timm"}'})
    onnx.save(model, path)
    assert onnx_facts(path) == ({"evalkit.recipe": '{"family": "timm"}'}, "fp32")

    half = onnx.load(path)  # float16 weights, as the fp16 transform writes them
    for i, t in enumerate(half.graph.initializer):
        half.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    onnx.save(half, tmp_path / "fp16.onnx")
    assert onnx_facts(tmp_path / "fp16.onnx")[1] == "fp16"

    quantized = onnx.load(path)  # explicit Q/DQ in front of the first node, as the int8 transform writes them
    graph = quantized.graph
    graph.initializer.extend([numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                              numpy_helper.from_array(np.array(0, np.int8), "z")])
    graph.node[0].input[0] = "dq"
    graph.node.insert(0, helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]))
    graph.node.insert(0, helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]))
    onnx.checker.check_model(quantized)
    onnx.save(quantized, tmp_path / "int8.onnx")
    assert onnx_facts(tmp_path / "int8.onnx") == ({"evalkit.recipe": '{"family": "timm"}'}, "int8")
    assert TensorProto.FLOAT16 not in {t.data_type for t in graph.initializer}


def test_onnx_facts_without_the_onnx_package_are_unknown_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # the import fails, as where evalkit[torch] is not installed
    assert onnx_facts(tmp_path / "absent.onnx") == ({}, None)


class FixedBatchLinear(Runtime):
    """A real fixed-batch model (a linear layer) that rejects any other batch size, as a static engine does."""

    fixed_batch = 4

    def __init__(self) -> None:
        self.w = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        assert len(batch) == 4
        return batch.mean(axis=(2, 3)) @ self.w


def test_short_batches_are_padded_for_fixed_batch_engines_and_trimmed():
    rt = FixedBatchLinear()
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert np.allclose(rt(x), x.mean(axis=(2, 3)) @ rt.w)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here; the missing-dependency path cannot be shown")
def test_without_tensorrt_the_run_says_which_extra_to_install(tmp_path):
    out = run_cli("runtime=trt", f"results.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    # the preflight lists what this machine lacks for the run, TensorRT's extra among it
    assert ("  - runtime=trt needs TensorRT and a CUDA GPU: pip install 'evalkit[trt]' "
            "(NVIDIA's tensorrt wheels; pycuda or cuda-python)") in out.stderr.splitlines(), out.stderr
    assert not (tmp_path / "r").exists()


def gpu_available() -> bool:
    try:
        open_cuda()
    except (UserError, ImportError):
        return False
    return True


def test_cuda_without_a_gpu_is_one_clear_error():
    if importlib.util.find_spec("pycuda") is None and importlib.util.find_spec("cuda") is None:
        pytest.skip("neither pycuda nor cuda-python is installed")
    if gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="CUDA error|pip install"):
        open_cuda()


gpu = pytest.mark.skipif(not (HAS_TENSORRT and gpu_available()), reason="needs TensorRT and a CUDA GPU")


def run(tmp_path, name, sample_root, lite0_onnx, *overrides):
    """(run.json, predictions) of the demo model on the shared sample, results under ``tmp_path/name``; the
    runs of a test share one cache, so they share the transformed ONNX and the engines."""
    return run_in_process(tmp_path / name, sample_root,
                          [f"model.onnx={lite0_onnx}", f"cache_dir={tmp_path / 'cache'}", *overrides])


def agreement(a, b) -> float:
    """Share of images whose top-1 class is the same in both runs (predictions matched by image id)."""
    merged = a.merge(b, on="id", suffixes=("_a", "_b"))
    assert len(merged) == len(a) == len(b)
    return float((merged["pred1_a"] == merged["pred1_b"]).mean())


@pytest.mark.gpu
@gpu
def test_fp32_engine_agrees_with_ort(ort_run, sample_root, lite0_onnx, tmp_path):
    got_run, got = run(tmp_path, "trt", sample_root, lite0_onnx, "runtime=trt")
    ort, ort_predictions, _ = ort_run
    assert agreement(got, ort_predictions) >= 0.995
    assert abs(got_run["metrics"]["top1"] - ort["metrics"]["top1"]) <= 0.5  # one image of the 200
    info = got_run["runtime"]["info"]
    assert info["precision"] == info["executed_precision"] == "fp32"
    assert set(info["latency"]) == {"bs1", "bs4", "bs8"}


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_engine_agrees_with_ort_on_the_same_transformed_onnx(precision, sample_root, lite0_onnx,
                                                                                calibration_root, tmp_path):
    overrides = [f"precision={precision}", f"precision.calibration.root={calibration_root}"]
    trt_record, trt_predictions = run(tmp_path, "trt", sample_root, lite0_onnx, "runtime=trt", *overrides)
    ort_record, ort_predictions = run(tmp_path, "ort", sample_root, lite0_onnx, "runtime=ort", *overrides)
    assert agreement(trt_predictions, ort_predictions) >= 0.99
    info = trt_record["runtime"]["info"]
    assert info["precision"] == info["executed_precision"] == precision
    assert abs(trt_record["metrics"]["top1"] - ort_record["metrics"]["top1"]) <= 1.0


@pytest.mark.gpu
@gpu
def test_second_run_hits_the_engine_cache_and_a_corrupt_engine_is_rebuilt(sample_root, lite0_onnx, tmp_path):
    first, _ = run(tmp_path, "a", sample_root, lite0_onnx, "runtime=trt")
    second, _ = run(tmp_path, "b", sample_root, lite0_onnx, "runtime=trt")
    assert not first["runtime"]["info"]["engine_cache_hit"] and second["runtime"]["info"]["engine_cache_hit"]
    engine = tmp_path / "cache" / "trt" / second["runtime"]["info"]["engine"].rsplit("/", 1)[1]
    engine.write_bytes(engine.read_bytes()[:100])
    third, _ = run(tmp_path, "c", sample_root, lite0_onnx, "runtime=trt")
    assert not third["runtime"]["info"]["engine_cache_hit"] and third["metrics"] == second["metrics"]


@pytest.mark.gpu
@gpu
def test_the_recipe_in_the_onnx_metadata_travels_with_the_engine(sample_root, lite0_onnx, tmp_path):
    """Engines carry no metadata: the sidecar does, so a cache hit still reports recipe drift."""
    built, _ = run(tmp_path, "a", sample_root, lite0_onnx, "runtime=trt", "preprocess.crop_pct=0.9")
    cached, _ = run(tmp_path, "b", sample_root, lite0_onnx, "runtime=trt", "preprocess.crop_pct=0.9")
    assert not built["runtime"]["info"]["engine_cache_hit"] and cached["runtime"]["info"]["engine_cache_hit"]
    for r in (built, cached):
        assert any("crop_pct: exported 0.875, configured 0.9" in w for w in r["warnings"]), r["warnings"]
