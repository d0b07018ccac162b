"""int8: Q/DQ where TensorRT places it, calibrated on a separate set, top-1 within a point of fp32, cached."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ..conftest import run_in_process  # noqa: TID252

onnx = pytest.importorskip("onnx", reason="the int8 transform needs evalkit[ort]")


def int8(tmp_path: Path, sample_root: Path, *extra: str, dataset: list[str] | None = None):
    return run_in_process(tmp_path, sample_root, ["precision=int8", *extra], dataset)


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory, sample_root, calibration_root):
    return int8(tmp_path_factory.mktemp("int8"), sample_root, f"precision.calibration.root={calibration_root}")


def test_top1_within_one_point_of_fp32_with_a_separate_calibration_set(ort_run, int8_run):
    fp32, _, _ = ort_run
    run, predictions = int8_run
    assert run["metrics"]["top1"] >= fp32["metrics"]["top1"] - 1.0, (run["metrics"]["top1"], fp32["metrics"]["top1"])
    assert run["runtime"]["info"]["executed_precision"] == "int8 Q/DQ simulated in fp32"
    assert "-tf_efficientnet_lite0-ort-int8-" in run["id"]  # the run folder's name says the precision
    calibration = run["transform"]["calibration"]
    assert calibration["overlaps_evaluation"] is False and calibration["overlapping_images"] == 0
    assert calibration["method"] == "minmax"
    assert calibration["images"] == calibration["classes"] > 10  # one photo per folder, every folder taken
    assert run["transform"]["model_sha256"] and run["transform"]["source_sha256"] != run["transform"]["model_sha256"]


def test_qdq_feeds_conv_and_gemm_never_the_output_nor_shape_arithmetic(int8_run):
    run, _ = int8_run
    model = onnx.load(run["transform"]["model"])
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dequantized = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dequantized
    for dq in dequantized:  # each feeds a Conv/Gemm (a residual Add may share the Conv's input, as TensorRT fuses)
        fed = {c.op_type for c in consumers.get(dq.output[0], [])}
        assert fed & {"Conv", "Gemm", "MatMul"} and fed <= {"Conv", "Gemm", "MatMul", "Add"}, (dq.name, fed)
    assert model.graph.output[0].name not in {dq.output[0] for dq in dequantized}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all((z == 0).all() and z.dtype == np.int8 for z in zero_points)  # symmetric int8
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    weight_dq = next(n for n in dequantized if n.output[0] == stem.input[1])
    assert inits[weight_dq.input[1]].size == inits[weight_dq.input[0]].shape[0] > 1  # one scale per out channel


def test_a_second_run_rewrites_nothing_and_other_settings_make_another_model(int8_run, sample_root, calibration_root,
                                                                             cache_dir, tmp_path):
    first, _ = int8_run
    model = Path(first["transform"]["model"])
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in model.parent.iterdir()}
    again, _ = int8(tmp_path / "again", sample_root, f"precision.calibration.root={calibration_root}")
    assert again["transform"]["model"] == str(model) and again["transform"]["cache_hit"] is True
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in model.parent.iterdir()} == before
    assert again["metrics"] == first["metrics"]

    fewer = tmp_path / "fewer"
    for folder in sorted(calibration_root.iterdir())[:5]:
        shutil.copytree(folder, fewer / folder.name)
    limited = ["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=10"]
    other_set, _ = int8(tmp_path / "set", sample_root, f"precision.calibration.root={fewer}", dataset=limited)
    other_method, _ = int8(tmp_path / "method", sample_root, f"precision.calibration.root={calibration_root}",
                           "precision.calibration.method=entropy", dataset=limited)
    models = {first["transform"]["model"], other_set["transform"]["model"], other_method["transform"]["model"]}
    assert len(models) == 3 and not other_set["transform"]["cache_hit"] and not other_method["transform"]["cache_hit"]


def test_without_a_calibration_set_the_overlap_is_warned_and_recorded(sample_root, tmp_path):
    run, _ = int8(tmp_path, sample_root, "precision.calibration.size=8",
                  dataset=["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=16"])
    assert run["transform"]["calibration"]["overlaps_evaluation"] is True
    assert run["transform"]["calibration"]["images"] == run["transform"]["calibration"]["overlapping_images"] == 8
    assert any("overlaps evaluation" in w for w in run["warnings"])


def test_copies_of_evaluated_images_in_the_calibration_set_are_counted_by_content(sample_root, tmp_path):
    evaluated = sorted(sample_root.glob("*/*.JPEG"), key=lambda p: p.stem)[:8]
    calibration = tmp_path / "calibration"
    for k, photo in enumerate(evaluated[:5]):  # under other names: the bytes make the overlap
        (calibration / photo.parent.name).mkdir(parents=True, exist_ok=True)
        (calibration / photo.parent.name / f"copy-{k}.JPEG").write_bytes(photo.read_bytes())
    run, _ = int8(tmp_path, sample_root, f"precision.calibration.root={calibration}",
                  dataset=["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=8"])
    recorded = run["transform"]["calibration"]
    assert recorded["images"] == recorded["overlapping_images"] == 5 and recorded["overlaps_evaluation"] is True
    assert any("calibrated on 5 of the evaluated images" in w for w in run["warnings"]), run["warnings"]


def test_onnx_runtime_int8_kernels_are_labelled_with_the_cpu(int8_run, sample_root, calibration_root, tmp_path):
    run, _ = int8(tmp_path, sample_root, f"precision.calibration.root={calibration_root}", "runtime.int8_kernels=true",
                  dataset=["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=10"])
    isa = run["runtime"]["info"]["cpu_isa"]
    assert run["runtime"]["info"]["executed_precision"] == f"int8 kernels on {isa}"
    assert run["transform"]["model"] == int8_run[0]["transform"]["model"]  # the same file, another view of it


def test_excluding_an_op_type_keeps_it_in_fp32_and_an_unknown_name_is_refused(sample_root, calibration_root,
                                                                               tmp_path):
    limited = ["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=4"]
    run, _ = int8(tmp_path / "a", sample_root, f"precision.calibration.root={calibration_root}",
                  "precision.exclude=[Gemm]", dataset=limited)
    model = onnx.load(run["transform"]["model"])
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    made = {out: n.op_type for n in model.graph.node for out in n.output}
    assert all(made.get(name) != "DequantizeLinear" for name in gemm.input)
    from evalkit.errors import UserError
    with pytest.raises(UserError, match="names no node and no op type"):
        int8(tmp_path / "b", sample_root, f"precision.calibration.root={calibration_root}",
             "precision.exclude=[no_such_layer]", dataset=limited)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_calibration_reads_one_batch_at_a_time(monkeypatch, lite0_onnx, calibration_root, tmp_path):
    """Entropy collects histograms batch by batch (bounded memory), not every batch's tensors at once."""
    from onnxruntime.quantization import calibrate

    from evalkit.config import compose
    from evalkit.plugins import make_context
    from evalkit import preprocess

    seen = []
    collect = calibrate.HistogramCalibrater.collect_data

    def counting(self, reader):
        seen.append(len(reader.todo))
        return collect(self, reader)

    monkeypatch.setattr(calibrate.HistogramCalibrater, "collect_data", counting)
    cfg = compose([f"model.onnx={lite0_onnx}", "precision=int8", f"precision.calibration.root={calibration_root}",
                   "precision.calibration.method=entropy", "precision.calibration.batch_size=4",
                   f"cache_dir={tmp_path}"])
    context = make_context(cfg.model, preprocess.build(cfg.preprocess), tmp_path, [], None, cfg.precision)
    context.onnx_file()
    assert len(seen) == -(-context.onnx_file.record["calibration"]["images"] // 4) and set(seen) == {1}
