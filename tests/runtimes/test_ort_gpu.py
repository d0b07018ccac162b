"""ONNX Runtime on a GPU (onnxruntime-gpu): the CUDA and TensorRT providers with IO binding, on the shared photos.

Skipped with the reason where the provider does not start (no onnxruntime-gpu, no GPU, CUDA libraries missing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit.errors import UserError

from ..conftest import run_in_process, tiny_onnx  # noqa: TID252
from .test_ort import CUDA, open_ort  # noqa: TID252

pytestmark = pytest.mark.gpu
TENSORRT = ["TensorrtExecutionProvider", *CUDA]


def starts(providers: list[str], tmp_path: Path) -> None:
    """Skip unless ``providers`` start here: the runtime's own check says why not."""
    pytest.importorskip("onnxruntime", reason="runtime=ort needs evalkit[ort]")
    try:
        open_ort(tiny_onnx(tmp_path / "probe.onnx"), tmp_path, providers=providers).close()
    except UserError as e:
        pytest.skip(f"needs {providers[0]} on a GPU: {e}")


def run_logits(folder: Path, sample_root: Path, overrides: list[str]) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """(run.json, predictions, logits in the predictions' order) of one run on the shared photos."""
    run, predictions = run_in_process(folder, sample_root, [*overrides, "results.save_logits=true"])
    return run, predictions, np.load(next((folder / "results").glob("*/logits.npy")))


def moved(predictions: pd.DataFrame, reference: pd.DataFrame) -> int:
    """Images whose top-1 differs from the reference run's, matched by id."""
    top1 = predictions.set_index("id")["pred1"]
    return int((top1 != reference.set_index("id")["pred1"].loc[top1.index]).sum())


def test_cuda_provider_binds_on_the_gpu_and_agrees_with_the_cpu(request, lite0_onnx, sample_root, tmp_path):
    starts(CUDA, tmp_path)
    _, cpu_predictions, cpu_logits = request.getfixturevalue("ort_run")  # after the skip: it runs the CPU model
    run, predictions, logits = run_logits(tmp_path, sample_root, ["runtime=ort_cuda", f"model.onnx={lite0_onnx}"])
    info = run["runtime"]["info"]
    assert info["providers"][0] == "CUDAExecutionProvider" and info["io_binding"] and info["device"] == "cuda:0"
    assert info["executed_precision"] == "fp32" and info["sessions"] == 1
    assert info["provider_options"]["CUDAExecutionProvider"]["cudnn_conv_algo_search"] == "HEURISTIC"
    # tolerance: IEEE fp32 on both (TF32 off), summed in other orders: at most 1 of the 200 top-1s moves
    assert moved(predictions, cpu_predictions) <= 1
    assert predictions["id"].equals(cpu_predictions["id"])  # the logits' rows are in the same order
    np.testing.assert_allclose(logits, cpu_logits, rtol=0, atol=1e-3)


def test_batch_size_does_not_change_cuda_provider_results(lite0_onnx, sample_root, tmp_path):
    starts(CUDA, tmp_path)
    runs = {size: run_logits(tmp_path / str(size), sample_root, ["runtime=ort_cuda", f"model.onnx={lite0_onnx}",
                                                                 f"runtime.batch_size={size}"])
            for size in (1, 7, 256)}
    for size in (7, 256):  # cuDNN may pick other algorithms for other shapes: logits within 1e-3, top-1 identical
        assert runs[size][1]["pred1"].equals(runs[1][1]["pred1"]), size
        np.testing.assert_allclose(runs[size][2], runs[1][2], rtol=0, atol=1e-3)


def test_tensorrt_provider_caches_engines_and_agrees_with_the_cpu(request, lite0_onnx, sample_root, tmp_path):
    starts(TENSORRT, tmp_path)
    _, cpu_predictions, _ = request.getfixturevalue("ort_run")
    engines = tmp_path / "engines"
    overrides = [f"model.onnx={lite0_onnx}", f"runtime.providers=[{','.join(TENSORRT)}]",
                 f"runtime.trt_engine_cache={engines}"]
    first, predictions, _ = run_logits(tmp_path / "first", sample_root, ["runtime=ort", *overrides])
    assert list(engines.glob("*.engine"))
    _, again, _ = run_logits(tmp_path / "again", sample_root, ["runtime=ort", *overrides])  # from the cached engines
    assert again["pred1"].equals(predictions["pred1"])
    info = first["runtime"]["info"]
    assert info["providers"][0] == "TensorrtExecutionProvider" and info["io_binding"]
    assert "trt_fp16_enable" not in info["provider_options"]["TensorrtExecutionProvider"]
    # tolerance: TensorRT may run fp32 layers in TF32: at most 2 of the 200 top-1s move
    assert moved(predictions, cpu_predictions) <= 2
