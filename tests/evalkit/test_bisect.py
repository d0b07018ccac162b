"""bisect: one-layer-in-fp32 variants by graph surgery, and the greedy fp32 island, on the real demo model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from evalkit import bisect

onnx = pytest.importorskip("onnx", reason="bisect edits ONNX graphs: evalkit[ort]")
pytest.importorskip("onnxruntime", reason="bisect runs ONNX Runtime: evalkit[ort]")

#: an early convolution of tf_efficientnet_lite0 whose input no other quantized op reads
EARLY_CONV = "/blocks/blocks.0/blocks.0.0/conv_pw/Conv"
#: one whose input a residual Add reads too
RESIDUAL_CONV = "/blocks/blocks.1/blocks.1.1/conv_pw/Conv"


def setup(sample_root: Path, calibration_root: Path, limit: int, *extra: str):
    """(context of the int8 run, its samples, the fp32 source) for the first ``limit`` shared photos."""
    from evalkit import dataset, preprocess
    from evalkit.config import cache_dir, compose
    from evalkit.plugins import make_context

    cfg = compose(["dataset=imagefolder", f"dataset.root={sample_root}", f"dataset.limit={limit}", "precision=int8",
                   f"precision.calibration.root={calibration_root}", *extra])
    recipe = preprocess.build(cfg.preprocess)
    samples = dataset.load(cfg.dataset)
    context = make_context(cfg.model, recipe, cache_dir(cfg), samples, None, cfg.precision)
    return context, samples, make_context(cfg.model, recipe, cache_dir(cfg)).onnx_file()


def test_surgery_equals_requantizing_with_the_layer_excluded(sample_root, calibration_root):
    context, samples, source = setup(sample_root, calibration_root, 4)
    qdq, fp32 = onnx.load(str(context.onnx_file())), onnx.load(str(source))
    with context.prepared(samples) as images:
        for layer in (EARLY_CONV, RESIDUAL_CONV):
            requantized, _, _ = setup(sample_root, calibration_root, 4, f"precision.exclude=[{layer}]")
            expected = bisect.logits(onnx.load(str(requantized.onnx_file())), images)
            got = bisect.logits(bisect.leave_fp32(qdq, fp32, {layer}), images)
            np.testing.assert_array_equal(got, expected)
            assert not np.array_equal(got, bisect.logits(qdq, images))


def harmed(qdq: Path, out: Path) -> Path:
    """The Q/DQ model with EARLY_CONV's input quantized to 1/50 of its calibrated range: it saturates."""
    model = onnx.load(str(qdq))
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.name == EARLY_CONV)
    quantize = producer[producer[conv.input[0]].input[0]]
    assert quantize.op_type == "QuantizeLinear"
    scale = next(i for i in model.graph.initializer if i.name == quantize.input[1])
    scale.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) / 50, scale.name))
    onnx.save(model, str(out))
    return out


def test_bisect_keeps_a_harmed_layer_in_fp32_and_reaches_the_target(tmp_path, sample_root, calibration_root,
                                                                    monkeypatch):
    context, samples, source = setup(sample_root, calibration_root, 8)
    model = harmed(context.onnx_file(), tmp_path / "harmed.onnx")
    checkpoint = tmp_path / "sensitivity.json"
    with context.prepared(samples) as subset:
        found = bisect.search(model, source, subset, 0.5, checkpoint, progress=False)
        assert EARLY_CONV in found.exclude, found
        assert found.int8_top1 < found.fp32_top1 - 0.5 <= found.top1
        assert len(found.sensitivity) == 50 and checkpoint.is_file()
        monkeypatch.setattr(bisect, "leave_fp32", lambda *a: pytest.fail("a rerun measured a variant again"))
        started = time.perf_counter()
        assert bisect.search(model, source, subset, 0.5, checkpoint, progress=False) == found
        assert time.perf_counter() - started < 10


def test_a_model_already_within_the_target_is_not_searched(tmp_path, sample_root, calibration_root):
    context, samples, source = setup(sample_root, calibration_root, 8)
    checkpoint = tmp_path / "sensitivity.json"
    with context.prepared(samples) as subset:
        found = bisect.search(context.onnx_file(), source, subset, 0.5, checkpoint, progress=False)
    assert found.exclude == [] and found.within_target_already and found.int8_top1 >= found.fp32_top1 - 0.5
    assert list(json.loads(checkpoint.read_text())) == ["[]"]  # the int8 model as it is, and no variant


def test_the_command_stops_at_once_and_warns_that_its_subset_is_coarser_than_the_target(sample_root,
                                                                                       calibration_root, capsys):
    bisect.main(["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=8", "progress=false",
                 "precision=int8", f"precision.calibration.root={calibration_root}", "subset=4", "target=0.5"])
    out, err = capsys.readouterr()
    assert ("WARNING: one image is 25.00 points on 4 images, coarser than the target 0.5: use at least 200 images"
            in err), err
    assert "int8 is already within 0.5 of fp32 on the subset (4)" in out and "layers" not in out, out
    assert out.splitlines()[-1] == "'precision.exclude=[]'"
    assert bisect.resolution_warning(200, 0.5) is None and bisect.resolution_warning(4, 0) is None


def test_a_layer_above_fp32_by_one_image_is_called_noise():
    found = bisect.Search([], fp32_top1=50.0, int8_top1=40.0, top1=50.0, images=60,
                          sensitivity={"a": {"top1": 50 + 100 / 60, "snr_db": 20.0}})
    assert (bisect.describe("a", found.sensitivity["a"], found)
            == "a 51.67 (20.0 dB, one image above fp32: within one image, noise)")
    assert bisect.describe("b", {"top1": 50.0, "snr_db": 9.5}, found) == "b 50.00 (9.5 dB)"


def test_macs_add_up_to_the_models_published_count(sample_root, calibration_root):
    context, samples, source = setup(sample_root, calibration_root, 1)
    qdq, fp32 = onnx.load(str(context.onnx_file())), onnx.load(str(source))
    with context.prepared(samples) as images:
        macs = bisect.macs(fp32, images.batch(0, 1), bisect.quantized_layers(qdq))
    assert len(macs) == 50 and macs["/classifier/Gemm"] == 1280 * 1000
    assert sum(macs.values()) / 1e9 == pytest.approx(0.39, rel=0.05)  # model.gmacs of tf_efficientnet_lite0


@pytest.mark.parametrize("args,message", [
    (["precision=int8", "target=-1"], "target=-1.0 is out of range: must be >= 0"),
    (["precision=fp16"], "precision=fp16: bisect searches int8 Q/DQ models"),
    (["precision=bf16"], "precision=bf16: bisect searches int8 Q/DQ models"),
    (["precision=int8", "precision.exclude=[/no/such/Conv]"], "precision.exclude=['/no/such/Conv'] names no node"),
])
def test_bad_requests_exit_2_with_one_message(sample_root, calibration_root, capsys, args, message):
    with pytest.raises(SystemExit) as exit:
        bisect.main(["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=4", "progress=false",
                     f"precision.calibration.root={calibration_root}", "subset=2", *args])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("evalkit: error") == 1, err
