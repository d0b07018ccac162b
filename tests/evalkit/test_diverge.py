"""diverge: per-layer agreement of a transformed model with its reference, on the real demo model and photos."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import diverge

from ..conftest import tiny_onnx  # noqa: TID252

onnx = pytest.importorskip("onnx", reason="diverge reads ONNX graphs: evalkit[ort]")
pytest.importorskip("onnxruntime", reason="diverge runs ONNX Runtime: evalkit[ort]")

#: a middle pointwise convolution of tf_efficientnet_lite0
MIDDLE_CONV = "/blocks/blocks.3/blocks.3.0/conv_pw/Conv"


def run(sample_root: Path, *args: str) -> None:
    diverge.main(["dataset=imagefolder", f"dataset.root={sample_root}", "progress=false", *args])


def perturbed(lite0_onnx: Path, out: Path) -> Path:
    """The fp32 model with one middle Conv's weights scaled by 1.5."""
    model = onnx.load(str(lite0_onnx))
    conv = next(n for n in model.graph.node if n.name == MIDDLE_CONV)
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 1.5, weight.name))
    onnx.save(model, str(out))
    return out


def test_int8_and_fp16_write_table_csv_and_plot_and_fp16_stays_closer(tmp_path, sample_root, calibration_root,
                                                                     lite0_onnx, capsys):
    tables = {}
    for precision in ("int8", "fp16"):
        run(sample_root, f"precision={precision}", f"precision.calibration.root={calibration_root}", "images=16",
            f"output={tmp_path / precision}")
        printed = capsys.readouterr().out
        assert "first layer below 20 dB" in printed and "snr_db" in printed and "dropped" in printed
        folder = tmp_path / precision
        assert (folder / "snr.png").stat().st_size > 0 and (folder / "unmatched.txt").exists()
        tables[precision] = pd.read_csv(folder / "layers.csv")
    for table in tables.values():
        assert table.iloc[-1]["tensor"] == "logits" and len(table) > 50
        assert set(table["op"]) >= {"Conv", "Clip", "Gemm"}  # feature maps only: no shape arithmetic
    assert tables["fp16"].iloc[-1]["snr_db"] > tables["int8"].iloc[-1]["snr_db"] + 10
    assert (tables["int8"]["cosine"] > 0.9).all()


def test_a_perturbed_conv_is_the_first_divergent_layer(tmp_path, sample_root, lite0_onnx, capsys):
    model = perturbed(lite0_onnx, tmp_path / "perturbed.onnx")
    run(sample_root, f"model.onnx={model}", f"reference={lite0_onnx}", "images=8", f"output={tmp_path / 'out'}")
    assert f"first layer below 20 dB: {MIDDLE_CONV}_output_0" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "layers.csv")
    at = table.index[table["tensor"] == f"{MIDDLE_CONV}_output_0"][0]
    assert np.isinf(table["snr_db"][:at]).all()  # identical up to the perturbed layer
    assert 3 < table["snr_db"][at] < 10  # 1.5x weights: error half the signal, about 6 dB


def test_the_figures_do_not_depend_on_the_batching(tmp_path, sample_root, lite0_onnx):
    from evalkit import dataset, preprocess
    from evalkit.config import compose
    from evalkit.prepare import Prepared

    cfg = compose(["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=6"])
    model = perturbed(lite0_onnx, tmp_path / "perturbed.onnx")
    with Prepared(dataset.load(cfg.dataset), preprocess.build(cfg.preprocess), None) as source:
        one, two = (diverge.compare(lite0_onnx, model, source, batch=b, progress=False) for b in (6, 4))
    pd.testing.assert_frame_equal(one.table, two.table, rtol=1e-9)
    assert one.dropped.keys() == {diverge.NOT_INPUT, diverge.NOT_FLOAT, diverge.SHAPE}
    assert one.unmatched == {"reference only": [], "model only": [], "shapes differ": []}


def renamed_tiny(path: Path) -> Path:
    """A real ONNX classifier none of whose tensor names the demo model has."""
    model = onnx.load(str(tiny_onnx(path)))
    for node in model.graph.node:
        node.output[:] = [f"other_{o}" for o in node.output]
        node.input[:] = [i if i in ("input", "w", "b") else f"other_{i}" for i in node.input]
    model.graph.output[0].name = "other_logits"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("args,message", [
    (["precision=int8", "images=0"], "images=0 is out of range: must be >= 1"),
    (["precision=int8", "images=many"], "images=many is not an integer"),
    (["precision=bf16"], "precision=bf16 has no ONNX transform"),
    ([], "nothing to compare: give precision=int8|fp16, or reference=PATH.onnx"),
    (["reference=missing.onnx"], "reference=missing.onnx: no such file"),
    (["reference=TINY"], "share no tensor name"),
])
def test_bad_requests_exit_2_with_one_message(tmp_path, sample_root, lite0_onnx, capsys, args, message):
    args = [a.replace("TINY", str(renamed_tiny(tmp_path / "tiny.onnx"))) for a in args]
    with pytest.raises(SystemExit) as exit:
        run(sample_root, "dataset.limit=2", f"output={tmp_path / 'out'}", *args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("evalkit: error") == 1, err
    assert not (tmp_path / "out").exists()


def test_sums_give_the_textbook_figures():
    sums = diverge._Sums()
    ref = np.array([[3.0, 4.0]], np.float32)
    sums.add(ref, ref * 1.1)
    figures = sums.figures()
    assert math.isclose(figures["snr_db"], 20.0, rel_tol=1e-6) and math.isclose(figures["rel_l2"], 0.1, rel_tol=1e-6)
    assert math.isclose(figures["cosine"], 1.0) and math.isclose(figures["max_abs_err"], 0.4, rel_tol=1e-6)
