"""The ONNX Runtime adapter on real ONNX files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evalkit import preprocess
from evalkit.config import ModelConfig
from evalkit.errors import UserError
from evalkit.plugins import make_context, open_runtime
from evalkit.preprocess.timm import Params
from evalkit.runtimes.ort import Options

from ..conftest import REPO, tiny_onnx  # noqa: TID252


def open_ort(onnx: Path, tmp_path: Path, **options):
    model = ModelConfig(name="m", arch="none", onnx=str(onnx))
    return open_runtime(Options(**options), make_context(model, preprocess.build(Params()), tmp_path))


def test_dynamic_batch_model_reports_its_shapes_and_runs_any_batch(tmp_path):
    rt = open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path)
    assert rt.fixed_batch is None and rt.input_shape == (3, 224, 224) and rt.num_outputs == 1000
    x = np.random.default_rng(0).standard_normal((5, 3, 224, 224), dtype=np.float32)
    logits = rt(x)
    assert logits.shape == (5, 1000) and logits.dtype == np.float32
    assert np.allclose(logits[:2], rt(x[:2]), atol=1e-5)
    assert rt.info()["providers"] == ["CPUExecutionProvider"] and len(rt.info()["model_sha256"]) == 64


def test_fixed_batch_pads_and_trims(tmp_path):
    fixed = open_ort(tiny_onnx(tmp_path / "f.onnx", batch=4), tmp_path)
    dynamic = open_ort(tiny_onnx(tmp_path / "d.onnx"), tmp_path)
    x = np.random.default_rng(1).standard_normal((3, 3, 224, 224), dtype=np.float32)
    assert fixed.fixed_batch == 4
    assert np.allclose(fixed(x), dynamic(x), atol=1e-5)


def test_thread_counts_are_accepted(tmp_path):
    rt = open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path, intra_op_threads=1, inter_op_threads=1)
    assert rt(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 1000)


def test_unavailable_provider_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not in this onnxruntime build"):
        open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path, providers=["NoSuchExecutionProvider"])


def test_a_file_that_is_not_onnx_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load"):
        open_ort(bad, tmp_path)


def test_model_without_onnx_or_weights_says_what_to_pass(tmp_path):
    model = ModelConfig(name="m", arch="none")
    with pytest.raises(UserError, match="model.onnx=PATH"):
        open_runtime(Options(), make_context(model, preprocess.build(Params()), tmp_path))


def test_unknown_runtime_is_a_user_error(tmp_path):
    opts = Options()
    opts.name = "nope"
    with pytest.raises(UserError, match="unknown runtime"):
        open_runtime(opts, make_context(ModelConfig(name="m", arch="none"), preprocess.build(Params()), tmp_path))


def test_sessions_split_each_batch_and_put_it_back_in_order(tmp_path, monkeypatch):
    from evalkit.runtimes import ort

    monkeypatch.setattr(ort, "cpu_cores", lambda: 4)  # three sessions, whatever this machine's cores
    onnx = tiny_onnx(tmp_path / "m.onnx")
    one, three = open_ort(onnx, tmp_path, sessions=1), open_ort(onnx, tmp_path, sessions=3, intra_op_threads=1)
    x = np.random.default_rng(2).standard_normal((8, 3, 224, 224), dtype=np.float32)
    assert np.array_equal(three(x), one(x)) and np.array_equal(three(x[:2]), one(x[:2]))  # fewer images than sessions
    assert three.info()["sessions"] == 3 and three.info()["threads_per_session"] == 1
    three.close()
    three.close()


def test_the_default_is_one_single_threaded_session_per_core_and_says_why(tmp_path, monkeypatch):
    from evalkit.runtimes import ort

    monkeypatch.setattr(ort, "cpu_cores", lambda: 4)
    assert ort.plan(Options(), 10 << 20, fixed_batch=False) == (4, 1, "one per core (4)")
    monkeypatch.setattr(ort, "_available_memory", lambda: 2 * (3 * (500 << 20) + (256 << 20)) * 2)
    sessions, threads, why = ort.plan(Options(), 500 << 20, fixed_batch=False)
    assert (sessions, threads) == (2, 2) and "free memory" in why  # a big model: capped by memory
    assert ort.plan(Options(), 10 << 20, fixed_batch=True)[0] == 1


def test_two_single_threaded_sessions_predict_exactly_as_one_on_the_shared_photos(sample_root, lite0_onnx, tmp_path):
    from ..conftest import run_in_process  # noqa: TID252

    one, p1 = run_in_process(tmp_path / "one", sample_root, [f"model.onnx={lite0_onnx}", "runtime.sessions=1"])
    two, p2 = run_in_process(tmp_path / "two", sample_root, [f"model.onnx={lite0_onnx}", "runtime.sessions=2",
                                                             "runtime.intra_op_threads=1"])
    columns = [f"pred{k}" for k in range(1, 6)]
    assert p1[columns].equals(p2[columns]) and one["metrics"] == two["metrics"]
    assert two["runtime"]["info"]["sessions"] == 2


# --- the GPU path, as far as it runs without a GPU

CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def photos(sample_root: Path, n: int) -> np.ndarray:
    """The first ``n`` shared photos through the demo model's recipe."""
    from evalkit.config import compose

    recipe = preprocess.build(compose([]).preprocess)
    return np.stack([recipe(p.read_bytes()) for p in sorted(sample_root.glob("*/*"))[:n]])


def test_io_binding_gives_the_logits_of_session_run_on_the_demo_model(lite0_onnx, sample_root, tmp_path):
    from evalkit.runtimes.ort import DeviceBinding, OrtRuntime

    rt = open_ort(lite0_onnx, tmp_path, sessions=1, intra_op_threads=1)
    batch = photos(sample_root, 7)
    bound = DeviceBinding(rt.session, rt.input.name, rt.session.get_outputs()[0].name, "cpu", 0)
    for part in (batch, batch[:3], batch[3:6], batch):  # a new shape, its buffer reused with other images, the first
        assert np.array_equal(bound(part), rt.session.run(None, {rt.input.name: part})[0])
    assert sorted(bound.inputs) == [(3, 3, 224, 224), (7, 3, 224, 224)]
    through = OrtRuntime(rt.sessions, rt.options, rt.path, rt.executed, rt.plan, rt.providers, device="cpu")
    assert np.array_equal(through(batch), rt(batch))
    assert through.info()["io_binding"] and not rt.info()["io_binding"]
    assert rt.info()["device"] == "cpu" and rt.info()["provider_options"] == {}
    through.close()
    through.close()
    assert bound.inputs and not through.binding.inputs


def available_with(monkeypatch, *providers: str) -> None:
    """onnxruntime claims ``providers`` besides its own: as onnxruntime-gpu does where CUDA is not installed."""
    import onnxruntime

    real = onnxruntime.get_available_providers()
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [*providers, *real])


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_gpu_provider_that_does_not_start_is_an_error_not_a_silent_cpu_run(monkeypatch, tmp_path):
    available_with(monkeypatch, "CUDAExecutionProvider")
    with pytest.raises(UserError) as e:  # the real session falls back to the CPU; the runtime must not
        open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path, providers=CUDA)
    assert "could not start CUDAExecutionProvider and would silently run on ['CPUExecutionProvider']" in str(e.value)
    assert "libonnxruntime_providers_cuda.so is not in" in str(e.value)  # this CPU build has no CUDA library


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_tensorrt_engines_go_under_the_evalkit_cache_and_a_lost_tensorrt_is_named(monkeypatch, tmp_path):
    available_with(monkeypatch, "TensorrtExecutionProvider", "CUDAExecutionProvider")
    with pytest.raises(UserError, match="could not start TensorrtExecutionProvider"):
        open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path, providers=["TensorrtExecutionProvider", *CUDA])
    assert len(list((tmp_path / "ort-tensorrt").iterdir())) == 1  # <model sha256[:16]>-ort<version>-b<batch_size>


def test_sessions_above_one_on_a_gpu_provider_are_refused_before_any_session(monkeypatch, tmp_path):
    available_with(monkeypatch, "CUDAExecutionProvider")
    with pytest.raises(UserError, match="runtime.sessions=2 splits each batch among CPU sessions"):
        open_ort(tiny_onnx(tmp_path / "m.onnx"), tmp_path, providers=CUDA, sessions=2)


def test_gpu_provider_options():
    from evalkit.runtimes.ort import provider_options

    dims = [None, 3, 224, 224]
    options = Options(providers=["TensorrtExecutionProvider", *CUDA], device_id=1)
    trt, cuda, cpu = provider_options(options, "input", dims, qdq=False, engine_cache=Path("/c"))
    assert cuda == ("CUDAExecutionProvider", {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC", "use_tf32": False})
    assert trt == ("TensorrtExecutionProvider", {
        "device_id": 1, "trt_engine_cache_enable": True, "trt_engine_cache_path": "/c",
        "trt_profile_min_shapes": "input:1x3x224x224", "trt_profile_opt_shapes": "input:32x3x224x224",
        "trt_profile_max_shapes": "input:32x3x224x224"})  # never trt_fp16_enable: the model has the precision
    assert cpu == ("CPUExecutionProvider", {})
    assert provider_options(options, "input", dims, qdq=True, engine_cache=Path("/c"))[0][1]["trt_int8_enable"]
    for name, shape in (("input", [4, 3, 224, 224]), ("input", [None, 3, None, None]), ("input:0", dims)):
        assert "trt_profile_min_shapes" not in provider_options(options, name, shape, False, Path("/c"))[0][1]


def test_gpu_options_are_checked():
    with pytest.raises(UserError, match="cudnn_conv_algo_search=FAST is not one of HEURISTIC, EXHAUSTIVE, DEFAULT"):
        Options(cudnn_conv_algo_search="FAST")
    with pytest.raises(UserError, match="runtime.device_id=-1"):
        Options(device_id=-1)


def test_gpu_precision_is_read_from_the_model(tmp_path):
    import onnx
    from onnx import TensorProto, numpy_helper

    from evalkit.runtimes.ort import gpu_precision

    model = onnx.load(tiny_onnx(tmp_path / "m.onnx"))
    assert gpu_precision(model, "CUDAExecutionProvider") == "fp32"
    assert gpu_precision(model, "TensorrtExecutionProvider") == "fp32 (TensorRT allows TF32)"
    w = model.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w).astype(np.float16), w.name))
    assert w.data_type == TensorProto.FLOAT16 and gpu_precision(model, "CUDAExecutionProvider") == "fp16"
    model.graph.node.add(op_type="DequantizeLinear")
    assert gpu_precision(model, "CUDAExecutionProvider") == "int8 Q/DQ simulated in fp32"


def test_load_error_names_the_library_the_loader_misses(tmp_path):
    import shutil
    import subprocess

    from evalkit.runtimes.ort import load_error

    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("needs a C compiler to build stand-in provider libraries")
    source = tmp_path / "empty.c"
    source.write_text("int evalkit_stand_in;\n")
    deps, capi = tmp_path / "deps", tmp_path / "capi"
    deps.mkdir()
    capi.mkdir()

    def build(out: Path, *extra: str) -> None:
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(source), *extra], check=True)

    assert "is not in" in load_error(capi, "CUDAExecutionProvider", "12.8")
    build(deps / "libcublasLt.so.12", "-Wl,-soname,libcublasLt.so.12")
    build(capi / "libonnxruntime_providers_shared.so")
    build(capi / "libonnxruntime_providers_tensorrt.so")
    build(capi / "libonnxruntime_providers_cuda.so", "-Wl,--no-as-needed", str(deps / "libcublasLt.so.12"))
    shutil.rmtree(deps)  # as on a machine without CUDA
    why = load_error(capi, "CUDAExecutionProvider", "12.8")
    assert "libcublasLt.so.12: cannot open shared object file" in why and "(built for CUDA 12.8)" in why
    assert "check the GPU, its driver" in load_error(capi, "TensorrtExecutionProvider", "")


def test_ort_cuda_selects_the_cuda_provider_and_stops_cleanly_without_it(tmp_path):
    import onnxruntime

    from evalkit.config import compose

    from ..conftest import run_cli  # noqa: TID252
    from ..evalkit.test_cli import imagefolder  # noqa: TID252

    runtime = compose(["runtime=ort_cuda"]).runtime
    assert runtime.name == "ort" and list(runtime.providers) == CUDA and runtime.cudnn_conv_algo_search == "HEURISTIC"
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("checks the message of an onnxruntime without the CUDA provider")
    out = run_cli("runtime=ort_cuda", f"model.onnx={tiny_onnx(tmp_path / 'm.onnx')}", "dataset=imagefolder",
                  f"dataset.root={imagefolder(tmp_path, n=3)}", f"results.dir={tmp_path / 'results'}", cwd=tmp_path)
    assert out.returncode == 2 and "install onnxruntime-gpu" in out.stderr, out.stderr


def test_reading_the_graph_does_not_import_onnx_and_equals_onnx_load(lite0_onnx):
    """Importing onnx (ml_dtypes) holds the GIL for most of a second at the start of every run."""
    code = (f"import sys\nfrom evalkit.runtimes.ort import _load_graph\nm = _load_graph({str(lite0_onnx)!r})\n"
            "print('onnx' in sys.modules)\nimport onnx\n"
            f"print(onnx.load({str(lite0_onnx)!r}, load_external_data=False) == m)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
