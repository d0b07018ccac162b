"""PyTorch eager, the framework the weights came from, against ONNX Runtime on the shared images."""

from __future__ import annotations

import pytest

from evalkit.errors import UserError

from ..conftest import run_in_process  # noqa: TID252

pytest.importorskip("torch", reason="runtime=torch needs evalkit[torch]")


def test_torch_and_ort_agree_image_by_image(ort_run, sample_root, tmp_path):
    run, predictions = run_in_process(tmp_path, sample_root, ["runtime=torch"])
    ort, ort_predictions, _ = ort_run
    assert (predictions["pred1"] == ort_predictions["pred1"]).mean() >= 0.995
    assert run["metrics"]["top1"] == ort["metrics"]["top1"] and run["runtime"]["info"]["torch"]


def test_torch_needs_weights(tmp_path, sample_root):
    with pytest.raises(UserError, match="model.weights=PATH"):
        run_in_process(tmp_path, sample_root, ["runtime=torch", "model.weights=null"])
