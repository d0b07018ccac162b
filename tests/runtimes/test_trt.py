"""TensorRT runtime: GPU-free parts everywhere; engine builds and accuracy where TensorRT and a GPU exist."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from evalkit.dataset import Sample
from evalkit.errors import UserError
from evalkit.contract import Runtime
from evalkit.runtimes._cuda import open_cuda
from evalkit.runtimes.trt import Options, calibration_subset, engine_key

from ..conftest import run_cli, run_in_process  # noqa: TID252

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def samples(per_class: dict[int, int]) -> list[Sample]:
    return [Sample(f"c{label:03d}_{i}", None, label) for label, n in per_class.items() for i in range(n)]


def test_calibration_subset_represents_every_class_first():
    pool = samples({label: 3 for label in range(10)})
    chosen = calibration_subset(pool, 10)
    assert sorted(s.label for s in chosen) == list(range(10))
    assert [s.id for s in chosen] == [f"c{label:03d}_0" for label in range(10)]
    assert calibration_subset(pool, 25) == calibration_subset(list(reversed(pool)), 25)  # deterministic
    assert len({s.label for s in calibration_subset(pool, 25)}) == 10 and len(calibration_subset(pool, 25)) == 25


def test_calibration_subset_with_fewer_images_than_asked_takes_them_all():
    pool = samples({0: 2, 5: 1})
    assert len(calibration_subset(pool, 1000)) == 3


def test_engine_key_changes_with_everything_that_changes_the_engine():
    base = dict(onnx_sha256="a" * 64, trt_version="10.7.0", gpu="NVIDIA H100", compute_capability="9.0",
                options=Options(), input_shape=(3, 224, 224), calibration=None)
    key = engine_key(**base)
    assert key == engine_key(**base)
    for change in [dict(onnx_sha256="b" * 64), dict(trt_version="10.8.0"), dict(gpu="NVIDIA A100"),
                   dict(compute_capability="8.0"), dict(options=Options(precision="fp16")),
                   dict(options=Options(batch_size=8)), dict(input_shape=(3, 256, 256))]:
        assert engine_key(**{**base, **change}) != key, change
    # the calibration set only matters for int8
    assert engine_key(**{**base, "calibration": "x"}) == key
    int8 = {**base, "options": Options(precision="int8")}
    assert engine_key(**{**int8, "calibration": "x"}) != engine_key(**{**int8, "calibration": "y"})


def test_bad_precision_is_a_user_error():
    with pytest.raises(UserError, match="runtime.precision"):
        Options(precision="bf8")


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
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "evalkit: error: runtime=trt needs TensorRT and a CUDA GPU: pip install 'evalkit[trt]' "
        "(NVIDIA's tensorrt wheels; pycuda or cuda-python)"]
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


gpu = pytest.mark.skipif(not (HAS_TENSORRT and gpu_available()), reason="needs TensorRT and a CUDA GPU (none here)")


def trt_run(tmp_path, sample_root, lite0_onnx, cache_dir, *extra):
    return run_in_process(tmp_path, sample_root, ["runtime=trt", f"model.onnx={lite0_onnx}", f"cache_dir={cache_dir}", *extra])


@pytest.mark.gpu
@gpu
def test_fp32_engine_agrees_with_ort(ort_run, sample_root, lite0_onnx, tmp_path):
    run, got = trt_run(tmp_path, sample_root, lite0_onnx, tmp_path / "cache")
    ort, ort_predictions, _ = ort_run
    assert (got["pred1"] == ort_predictions["pred1"]).mean() >= 0.995
    assert run["metrics"]["top1"] == ort["metrics"]["top1"]
    assert set(run["runtime"]["info"]["latency"]) == {"bs1", "bs4", "bs8"}


@pytest.mark.gpu
@gpu
def test_fp16_within_two_tenths_of_a_point(ort_run, sample_root, lite0_onnx, tmp_path):
    run, _ = trt_run(tmp_path, sample_root, lite0_onnx, tmp_path / "cache", "runtime.precision=fp16")
    assert abs(run["metrics"]["top1"] - ort_run[0]["metrics"]["top1"]) <= 0.2


@pytest.mark.gpu
@gpu
def test_second_run_hits_the_engine_cache_and_a_corrupt_engine_is_rebuilt(sample_root, lite0_onnx, tmp_path):
    first, _ = trt_run(tmp_path / "a", sample_root, lite0_onnx, tmp_path / "cache")
    second, _ = trt_run(tmp_path / "b", sample_root, lite0_onnx, tmp_path / "cache")
    assert not first["runtime"]["info"]["engine_cache_hit"] and second["runtime"]["info"]["engine_cache_hit"]
    engine = tmp_path / "cache" / "trt" / second["runtime"]["info"]["engine"].rsplit("/", 1)[1]
    engine.write_bytes(engine.read_bytes()[:100])
    third, _ = trt_run(tmp_path / "c", sample_root, lite0_onnx, tmp_path / "cache")
    assert not third["runtime"]["info"]["engine_cache_hit"] and third["metrics"] == second["metrics"]


@pytest.mark.gpu
@gpu
def test_int8_builds_with_a_recorded_class_balanced_calibration(ort_run, sample_root, lite0_onnx, tmp_path):
    run, _ = trt_run(tmp_path, sample_root, lite0_onnx, tmp_path / "cache", "runtime.precision=int8",
                     "runtime.calib_size=200", "runtime.calib_batch=8")
    calibration = run["runtime"]["info"]["calibration"]
    assert calibration["images"] == 200 and calibration["classes"] == 200 and calibration["batch"] == 8
    assert list((tmp_path / "cache" / "trt").glob("*.calib"))
    assert abs(run["metrics"]["top1"] - ort_run[0]["metrics"]["top1"]) <= 5.0
    assert json.dumps(run["runtime"]["info"]["latency"])
