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


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs_under_autocast_and_says_so(precision, ort_run, sample_root, tmp_path):
    run, predictions = run_in_process(tmp_path, sample_root, ["runtime=torch", f"precision={precision}"],
                                      ["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=40"])
    _, fp32, _ = ort_run
    agree = (predictions.set_index("id")["pred1"] == fp32.set_index("id").loc[predictions["id"], "pred1"]).mean()
    assert agree >= 0.95, agree
    assert run["runtime"]["info"]["executed_precision"] == f"{precision} (autocast)"
    assert "transform" not in run  # the framework runs its own mode; no ONNX is transformed


def test_int8_is_refused_naming_the_runtimes_that_run_it(tmp_path, sample_root):
    with pytest.raises(UserError, match="runtime=torch cannot run precision=int8; runtimes that can: ort"):
        run_in_process(tmp_path, sample_root, ["runtime=torch", "precision=int8"])
