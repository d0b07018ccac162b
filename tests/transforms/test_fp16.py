"""fp16: float16 weights with float32 inputs and outputs, top-1 within half a point of fp32, labelled honestly."""

from __future__ import annotations

import pytest

from ..conftest import run_in_process  # noqa: TID252

onnx = pytest.importorskip("onnx", reason="the fp16 transform needs evalkit[ort]")


@pytest.fixture(scope="module")
def fp16_run(tmp_path_factory, sample_root):
    return run_in_process(tmp_path_factory.mktemp("fp16"), sample_root, ["precision=fp16"])


def test_top1_within_half_a_point_of_fp32(ort_run, fp16_run):
    fp32, _, _ = ort_run
    run, _ = fp16_run
    assert run["metrics"]["top1"] >= fp32["metrics"]["top1"] - 0.5, (run["metrics"]["top1"], fp32["metrics"]["top1"])
    assert run["transform"]["calibration"] is None


def test_weights_are_float16_inputs_and_outputs_float32(fp16_run):
    run, _ = fp16_run
    model = onnx.load(run["transform"]["model"])
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [t.type.tensor_type.elem_type for t in (*model.graph.input, *model.graph.output)] == [float32, float32]
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weights = {i.name: i.data_type for i in model.graph.initializer}
    assert weights[conv.input[1]] == float16


def test_onnx_runtime_cpu_says_it_computed_in_fp32(fp16_run):
    """The CPU provider has no fp16 Conv: it casts the weights up, and the run says so."""
    run, _ = fp16_run
    assert run["runtime"]["info"]["executed_precision"] == "fp16 weights; fp32 compute"


def test_excluded_op_types_stay_float32(sample_root, tmp_path):
    run, _ = run_in_process(tmp_path, sample_root, ["precision=fp16", "precision.exclude=[Gemm]"],
                            ["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=4"])
    model = onnx.load(run["transform"]["model"])
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    weights = {i.name: i.data_type for i in model.graph.initializer}
    assert weights[gemm.input[1]] == onnx.TensorProto.FLOAT
