"""The runtime contract, checked on every runtime registered in the ``evalkit.runtimes`` entry points."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from evalkit.contract import GROUPS, OfflineRuntime, Runtime, load, plugins

from ..conftest import REPO, run_cli, tiny_onnx  # noqa: TID252
from ..evalkit.test_cli import imagefolder  # noqa: TID252

RUNTIMES = sorted(plugins(GROUPS["runtime"]))
HEAVY = ("torch", "tensorrt", "onnxruntime", "cv2")
#: runtime -> (the import that fails without its extra, the extra the error must name)
DEPENDENCY = {"ort": ("onnxruntime", "evalkit[ort]"), "trt": ("tensorrt", "evalkit[trt]"),
              "torch": ("torch", "evalkit[torch]"), "openvino": ("openvino", "evalkit[openvino]")}


def python(code: str, pythonpath: str = str(REPO)) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_builtins_are_registered():
    assert {"ort", "trt", "torch", "ascend", "vamp"} <= set(RUNTIMES)


@pytest.mark.parametrize("name", RUNTIMES)
def test_options_dataclass_is_named_after_the_entry_point(name):
    module = load(GROUPS["runtime"], name)
    assert dataclasses.is_dataclass(module.Options)
    assert module.Options().name == name
    assert callable(module.open)


@pytest.mark.parametrize("name", RUNTIMES)
def test_module_imports_lazily(name):
    out = python(f"""
        import sys
        from evalkit.contract import GROUPS, load
        load(GROUPS["runtime"], {name!r}).Options()
        from evalkit.config import compose, register
        register()
        print([m for m in {HEAVY!r} if m in sys.modules])
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", RUNTIMES)
def test_missing_dependency_is_a_user_error_naming_the_extra(name, tmp_path):
    if name not in DEPENDENCY:
        pytest.skip(f"runtime {name} has no optional dependency to take away")
    blocked, extra = DEPENDENCY[name]
    onnx = tiny_onnx(tmp_path / "m.onnx")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    out = python(f"""
        import sys

        class Absent:  # the import fails, as where the extra is not installed
            def find_spec(self, fullname, path=None, target=None):
                if fullname.split(".")[0] in ({blocked!r}, "timm"):
                    raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)

        sys.meta_path.insert(0, Absent())
        from evalkit import preprocess
        from evalkit.config import ModelConfig
        from evalkit.contract import GROUPS, load
        from evalkit.errors import UserError
        from evalkit.plugins import make_context
        from evalkit.preprocess.timm import Params
        from pathlib import Path
        module = load(GROUPS["runtime"], {name!r})
        model = ModelConfig(name="m", arch="resnet18", onnx={str(onnx)!r}, weights={str(weights)!r})
        try:
            module.open(module.Options(), make_context(model, preprocess.build(Params()), Path({str(tmp_path)!r})))
        except UserError as e:
            print("UserError:", e)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("UserError:") and extra in out.stdout, out.stdout


# --- opening each runtime for real where it can run here

def _open(name: str, tmp_path: Path):
    """(options overrides for the CLI, an opened runtime) or a skip with the reason."""
    from evalkit import preprocess
    from evalkit.classes import imagenet1k
    from evalkit.config import ModelConfig
    from evalkit.plugins import make_context
    from evalkit.preprocess.timm import Params

    module = load(GROUPS["runtime"], name)
    onnx = tiny_onnx(tmp_path / "m.onnx")
    ids = [f"{imagenet1k().wnids[i % 3]}_{i}" for i in range(3)]
    if name == "ort":
        if find_spec("onnxruntime") is None:
            pytest.skip("needs onnxruntime (evalkit[ort])")
        options, overrides = module.Options(), []
    elif name == "openvino":
        if find_spec("openvino") is None:
            pytest.skip("needs openvino (evalkit[openvino])")
        options, overrides = module.Options(), []
    elif name == "trt":
        from evalkit.runtimes._cuda import open_cuda
        if find_spec("tensorrt") is None:
            pytest.skip("needs TensorRT and a CUDA GPU (none here)")
        try:
            open_cuda()
        except Exception as e:  # noqa: BLE001 - no GPU: skip with the reason
            pytest.skip(f"needs a CUDA GPU: {e}")
        options, overrides = module.Options(latency_batches=[1], latency_iters=2), ["runtime.latency_batches=[1]"]
    elif name == "ascend":
        dump = tmp_path / "dump"
        dump.mkdir()
        for i, stem in enumerate(ids):
            row = np.zeros(1000, np.float32)
            row[i % 3] = 1
            (dump / f"{stem}_1.txt").write_text(" ".join(map(str, row)))
        options, overrides = module.Options(dump_dir=str(dump)), [f"runtime.dump_dir={dump}"]
    elif name == "vamp":
        result = tmp_path / "result.txt"
        result.write_text("".join(f"/x/{stem}.npz: Relay top-{k} id: {(i + k) % 1000}, prob: 0.1, class name: c\n"
                                  for i, stem in enumerate(ids) for k in range(5)))
        options, overrides = module.Options(result_txt=str(result)), [f"runtime.result_txt={result}"]
    elif name == "torch":
        pytest.skip("runtime=torch needs a weights file of a timm architecture; tests/runtimes/test_torch.py runs it")
    else:
        pytest.skip(f"no small run known for the third-party runtime {name}")
    model = ModelConfig(name="m", arch="none", onnx=str(onnx))
    runtime = module.open(options, make_context(model, preprocess.build(Params()), tmp_path / "cache"))
    return [f"model.onnx={onnx}", *overrides], runtime


@pytest.mark.parametrize("name", RUNTIMES)
def test_close_is_idempotent(name, tmp_path):
    _, runtime = _open(name, tmp_path)
    assert isinstance(runtime, (Runtime, OfflineRuntime))
    assert isinstance(runtime.info(), dict)
    runtime.close()
    runtime.close()


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_small_real_run(name, tmp_path):
    overrides, runtime = _open(name, tmp_path)
    runtime.close()
    root = imagefolder(tmp_path, n=3)
    out = run_cli(f"runtime={name}", *overrides, "dataset=imagefolder", f"dataset.root={root}",
                  f"results.dir={tmp_path / 'results'}", cwd=tmp_path, cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    run = json.loads(next((tmp_path / "results").glob("*/run.json")).read_text())
    assert run["runtime"]["name"] == name and run["metrics"]["n"] == 3


@pytest.mark.parametrize("name", RUNTIMES)
def test_stream_gives_each_batchs_logits_in_order(name, tmp_path):
    """The core runs an evaluation through ``stream``; a runtime that works ahead must not reorder or mix batches."""
    _, runtime = _open(name, tmp_path)
    if not isinstance(runtime, Runtime):
        pytest.skip(f"runtime={name} scores a device's outputs: no batches")
    rng = np.random.default_rng(0)
    if runtime.takes_pixels:  # the recipe's uint8 NHWC pixels
        batches = [rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8) for n in (4, 1, 3)]
    else:
        batches = [rng.random((n, 3, 224, 224), dtype=np.float32) for n in (4, 1, 3)]
    try:
        one_by_one = [runtime(b) for b in batches]
        streamed = list(runtime.stream(iter(batches)))
    finally:
        runtime.close()
    assert len(streamed) == len(batches)
    for got, want in zip(streamed, one_by_one):
        np.testing.assert_array_equal(got, want)
