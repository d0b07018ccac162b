"""The OpenVINO runtime on real models: the pretrained lite0 on the shared photos against ONNX Runtime (fp32, int8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import preprocess
from evalkit.config import ModelConfig
from evalkit.contract import GROUPS, PrecisionOptions, load, params_dict
from evalkit.errors import UserError
from evalkit.plugins import make_context, open_runtime
from evalkit.preprocess.timm import Params

from ..conftest import REPO, run_cli, run_in_process, tiny_onnx  # noqa: TID252
from ..evalkit.test_cli import imagefolder  # noqa: TID252

ov = pytest.importorskip("openvino", reason="runtime=openvino needs OpenVINO (evalkit[openvino])")

from evalkit.runtimes.openvino import Options  # noqa: E402 - after the skip: the tests need OpenVINO to run


def open_openvino(onnx: Path, tmp_path: Path, precision: str = "fp32", **options):
    model = ModelConfig(name="m", arch="none", onnx=str(onnx))
    context = make_context(model, preprocess.build(Params()), tmp_path, precision=PrecisionOptions(name=precision))
    return open_runtime(Options(**options), context)


def capabilities() -> list[str]:
    return ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Image-level top-1 agreement, in percent, of two runs' predictions matched by image id."""
    both = a.merge(b, on="id")
    assert len(both) == len(a) == len(b)
    return float((both["pred1_x"] == both["pred1_y"]).mean() * 100)


def run_with_logits(tmp_path: Path, sample_root: Path, overrides: list[str]):
    """(run.json, predictions, logits) of a run on the shared photos."""
    run, predictions = run_in_process(tmp_path, sample_root, [*overrides, "results.save_logits=true"])
    return run, predictions, np.load(next((tmp_path / "results").glob("*/logits.npy")))


# --- the pretrained model on the shared photos

@pytest.fixture(scope="module")
def openvino_run(sample_root, lite0_onnx, tmp_path_factory):
    return run_with_logits(tmp_path_factory.mktemp("openvino"), sample_root, ["runtime=openvino",
                                                                                f"model.onnx={lite0_onnx}"])


def test_fp32_gives_onnx_runtimes_accuracy_on_the_shared_photos(openvino_run, ort_run):
    run, predictions, logits = openvino_run
    reference, reference_predictions, reference_logits = ort_run
    same = agreement(predictions, reference_predictions)
    print(f"\nopenvino fp32 top1/top5 {run['metrics']['top1']}/{run['metrics']['top5']}, onnxruntime "
          f"{reference['metrics']['top1']}/{reference['metrics']['top5']}, top-1 agreement {same:.1f}%, "
          f"max abs logit diff {np.abs(logits - reference_logits).max():.3g}")
    for metric in ("top1", "top5"):
        assert run["metrics"][metric] == reference["metrics"][metric]
    assert same >= 99.5
    info = run["runtime"]["info"]
    assert info["executed_precision"] == "fp32" and info["inference_precision_hint"] == "f32"
    assert info["int8_layers"] == 0 and info["compute_layers"] > 0 and info["cpu_isa"]
    assert run["warnings"] == []  # the ONNX's recipe metadata, read through OpenVINO, matches the run's


def test_fp32_is_asked_for_explicitly_where_openvino_would_pick_bf16(openvino_run, lite0_onnx):
    run, _, _ = openvino_run
    assert run["runtime"]["info"]["inference_precision_hint"] == "f32"
    if "BF16" not in capabilities():
        pytest.skip("this CPU has no bf16 (AMX or AVX-512 BF16): OpenVINO's own default is f32 here anyway")
    core = ov.Core()
    default = core.compile_model(core.read_model(str(lite0_onnx)), "CPU")
    assert default.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"


def test_int8_qdq_runs_in_int8_kernels_within_a_point_of_onnx_runtimes_simulation(sample_root, lite0_onnx,
                                                                                 calibration_root, tmp_path):
    int8 = [f"model.onnx={lite0_onnx}", "precision=int8", f"precision.calibration.root={calibration_root}"]
    simulated, simulated_predictions = run_in_process(tmp_path / "ort", sample_root, int8)
    run, predictions = run_in_process(tmp_path / "openvino", sample_root, ["runtime=openvino", *int8])
    same = agreement(predictions, simulated_predictions)
    info = run["runtime"]["info"]
    print(f"\nopenvino int8 top1/top5 {run['metrics']['top1']}/{run['metrics']['top5']}, onnxruntime Q/DQ simulated "
          f"{simulated['metrics']['top1']}/{simulated['metrics']['top5']}, top-1 agreement {same:.1f}%, "
          f"executed: {info['executed_precision']}")
    assert info["model_sha256"] == simulated["transform"]["model_sha256"]  # the one Q/DQ file evalkit made
    assert abs(run["metrics"]["top1"] - simulated["metrics"]["top1"]) <= 1.0
    assert info["int8_layers"] > 0 and info["executed_precision"].startswith("int8 kernels")


# --- the adapter on small real models

def test_dynamic_batch_is_split_across_requests_and_put_back_in_order(tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    one = open_openvino(onnx, tmp_path, performance_hint="LATENCY", num_streams=1, inference_num_threads=1)
    two = open_openvino(onnx, tmp_path, num_streams=2)
    assert two.fixed_batch is None and two.input_shape == (3, 224, 224) and two.num_outputs == 1000
    assert one.info()["infer_requests"] == 1 and one.info()["inference_num_threads"] == 1
    assert two.info()["infer_requests"] == two.info()["num_streams"] == 2
    x = np.random.default_rng(0).standard_normal((7, 3, 224, 224), dtype=np.float32)
    logits = two(x)
    assert logits.shape == (7, 1000) and logits.dtype == np.float32
    assert np.allclose(logits, one(x), atol=1e-5) and np.allclose(two(x[:1]), logits[:1], atol=1e-5)


def test_auto_runs_on_an_available_device_and_records_plain_values(tmp_path):
    rt = open_openvino(tiny_onnx(tmp_path / "m.onnx"), tmp_path, device="AUTO")
    assert rt(np.zeros((3, 3, 224, 224), np.float32)).shape == (3, 1000)
    info = json.loads(json.dumps(rt.info()))
    assert info["executed_precision"] == "fp32" and info["performance_hint"] == "THROUGHPUT"
    assert set(info["execution_devices"]) <= set(ov.Core().available_devices)


def test_fixed_batch_pads_and_trims(tmp_path):
    fixed = open_openvino(tiny_onnx(tmp_path / "f.onnx", batch=4), tmp_path)
    dynamic = open_openvino(tiny_onnx(tmp_path / "d.onnx"), tmp_path)
    x = np.random.default_rng(1).standard_normal((3, 3, 224, 224), dtype=np.float32)
    assert fixed.fixed_batch == 4 and fixed.info()["infer_requests"] == 1
    assert np.allclose(fixed(x), dynamic(x), atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precisions_record_what_openvino_compiled_and_warn_when_it_differs(precision, tmp_path, capsys):
    """What runs depends on the CPU (AMX or AVX-512 BF16 run an fp16 request in bf16; AVX2 runs both in f32): the
    expectation is what OpenVINO reports for the compiled model, never this machine's ISA."""
    if precision == "fp16":
        pytest.importorskip("onnxruntime", reason="the fp16 transform converts with ONNX Runtime's tools (evalkit[ort])")
    onnx = tiny_onnx(tmp_path / "m.onnx")
    rt = open_openvino(onnx, tmp_path, precision)
    x = np.random.default_rng(2).standard_normal((4, 3, 224, 224), dtype=np.float32)
    assert np.allclose(rt(x), open_openvino(onnx, tmp_path)(x), rtol=0.05, atol=0.05)
    compiled = rt.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # OpenVINO's own word
    executed = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}[compiled]
    print(f"\n{precision} asked; OpenVINO compiled {compiled} on {capabilities()}")
    assert rt.info()["executed_precision"] == executed
    warned = f"precision={precision} asked" in capsys.readouterr().err
    assert warned == (executed != precision)


def test_an_openvino_ir_carries_the_recipe_and_the_run_warns_on_drift(tmp_path):
    model = ov.Core().read_model(str(tiny_onnx(tmp_path / "m.onnx")))
    model.set_rt_info(json.dumps({**params_dict(Params()), "crop_pct": 0.5}), "evalkit.recipe")
    ov.save_model(model, str(tmp_path / "m.xml"))
    rt = open_openvino(tmp_path / "m.xml", tmp_path)
    assert json.loads(rt.metadata["evalkit.recipe"])["crop_pct"] == 0.5 and "weights_sha256" in rt.info()
    out = run_cli("runtime=openvino", f"model.onnx={tmp_path / 'm.xml'}", "dataset=imagefolder",
                  f"dataset.root={imagefolder(tmp_path, n=3)}", f"results.dir={tmp_path / 'results'}", cwd=tmp_path,
                  cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    run = json.loads(next((tmp_path / "results").glob("*/run.json")).read_text())
    assert run["runtime"]["name"] == "openvino" and run["metrics"]["n"] == 3
    assert any("crop_pct: exported 0.5" in w for w in run["warnings"]), run["warnings"]
    with pytest.raises(UserError, match="an OpenVINO IR runs in fp32 or bf16"):
        open_openvino(tmp_path / "m.xml", tmp_path, "int8")


def test_settings_that_cannot_work_are_user_errors(tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(UserError, match=r"runtime.device=NPU: NPU not available to OpenVINO here \(available: .*CPU"):
        open_openvino(onnx, tmp_path, device="NPU" if "NPU" not in ov.Core().available_devices else "NOPE")
    with pytest.raises(UserError, match="performance_hint=FAST is not one of LATENCY, THROUGHPUT"):
        Options(performance_hint="FAST")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="openvino cannot read"):
        open_openvino(bad, tmp_path)
    weights_only = ModelConfig(name="m", arch="none", weights=str(onnx))
    with pytest.raises(UserError, match="precision=bf16 on runtime=openvino .* pass model.onnx=PATH"):
        open_runtime(Options(), make_context(weights_only, preprocess.build(Params()), tmp_path,
                                             precision=PrecisionOptions(name="bf16")))


def test_close_twice_is_harmless_and_options_are_named_after_the_entry_point(tmp_path):
    rt = open_openvino(tiny_onnx(tmp_path / "m.onnx"), tmp_path)
    assert rt.info()["executed_precision"] == "fp32"
    rt.close()
    rt.close()
    assert Options().name == "openvino" and load(GROUPS["runtime"], "openvino").Options is Options


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=300)


def test_loading_the_module_imports_no_heavy_dependency():
    out = python("""
        import sys
        from evalkit.contract import GROUPS, load
        load(GROUPS["runtime"], "openvino").Options()
        print([m for m in ("openvino", "onnx", "onnxruntime", "torch", "cv2") if m in sys.modules])
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_openvino_the_run_exits_2_naming_the_extra(tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    out = python(f"""
        import sys

        class Absent:  # the import fails, as where the extra is not installed
            def find_spec(self, fullname, path=None, target=None):
                if fullname.split(".")[0] == "openvino":
                    raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)

        sys.meta_path.insert(0, Absent())
        sys.argv = ["evalkit", "runtime=openvino", "model.onnx={onnx}", "dataset=imagefolder",
                    "dataset.root={imagefolder(tmp_path, n=3)}", "results.dir={tmp_path / 'results'}", "progress=false"]
        from evalkit.cli import main
        main()
    """)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "pip install 'evalkit[openvino]'" in out.stderr, out.stderr
    assert not (tmp_path / "results").exists()
