"""The recipe contract, checked on every recipe family registered in the ``evalkit.recipes`` entry points."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from evalkit import preprocess
from evalkit.contract import GROUPS, Recipe, load, params_dict, plugins

from ..conftest import REPO  # noqa: TID252
from ..preprocess.conftest import encode  # noqa: TID252

RECIPES = sorted(plugins(GROUPS["recipe"]))


def test_the_builtins_are_registered():
    assert {"timm", "mmcls", "paddle", "resnest", "square"} <= set(RECIPES)
    assert set(preprocess.families()) == set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_params_dataclass_is_named_after_the_entry_point(name):
    module = load(GROUPS["recipe"], name)
    assert dataclasses.is_dataclass(module.Params) and module.Params().family == name
    assert isinstance(module.LIBRARIES, (list, tuple)) and all(isinstance(d, str) for d in module.LIBRARIES)
    assert all(callable(getattr(module, f, None)) for f in ("pixels", "normalize", "normalize_torch", "output_shape"))
    params_dict(module.Params())  # plain, JSON-able


@pytest.mark.parametrize("name", RECIPES)
def test_module_imports_lazily(name):
    code = textwrap.dedent(f"""
        import sys
        from evalkit.contract import GROUPS, load
        load(GROUPS["recipe"], {name!r}).Params()
        print([m for m in ("torch", "tensorrt", "onnxruntime", "cv2") if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", RECIPES)
def test_a_real_image_gives_the_declared_shapes(name):
    recipe = preprocess.build(load(GROUPS["recipe"], name).Params())
    assert isinstance(recipe, Recipe)
    data = encode(320, 240, fmt="JPEG")
    pixels = recipe.pixels_fn(data)
    array = recipe(data)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3
    assert array.dtype == np.float32 and array.shape == recipe.output_shape
    assert np.array_equal(array, recipe.normalize(pixels))
    assert len(recipe.fingerprint) == 16


@pytest.mark.parametrize("name", RECIPES)
def test_missing_opencv_is_a_user_error_naming_the_extra(name):
    code = textwrap.dedent(f"""
        import sys

        class Absent:
            def find_spec(self, fullname, path=None, target=None):
                if fullname.split(".")[0] == "cv2":
                    raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)

        sys.meta_path.insert(0, Absent())
        from evalkit import preprocess
        from evalkit.contract import GROUPS, load
        from evalkit.errors import UserError
        sys.path.insert(0, {str(REPO / "tests" / "preprocess")!r})
        from conftest import encode
        recipe = preprocess.build(load(GROUPS["recipe"], {name!r}).Params())
        try:
            recipe(encode(64, 48, fmt="JPEG"))
            print("ok")
        except UserError as e:
            print("UserError:", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # a recipe that decodes with PIL works without OpenCV; one that needs it names the extra
    assert out.stdout.strip() == "ok" or "evalkit[opencv]" in out.stdout, out.stdout


def _model_recipes() -> list[str]:
    """Every model config: together they cover each family's parameter variants (scales, channel orders)."""
    root = REPO / "conf" / "model"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def _check_normalize_torch(model: str, device: str, photos: list) -> None:
    torch = pytest.importorskip("torch", reason="normalize_torch needs PyTorch (evalkit[torch])")
    from evalkit.config import compose

    recipe = preprocess.build(compose([f"model={model}"]).preprocess)
    pixels = np.stack([recipe.pixels_fn(p.read_bytes()) for p in photos])
    got = recipe.normalize_torch(torch.from_numpy(pixels).to(device))
    assert got.dtype == torch.float32 and tuple(got.shape) == (len(photos), *recipe.output_shape)
    want = np.stack([recipe.normalize(p) for p in pixels])
    assert np.array_equal(got.cpu().numpy(), want), model


@pytest.mark.parametrize("model", _model_recipes())
def test_normalize_torch_equals_normalize_bit_for_bit(model, sample_root):
    """What a GPU runtime computes from the uint8 batch is the float array the CPU recipe makes."""
    _check_normalize_torch(model, "cpu", sorted(sample_root.rglob("*.JPEG"))[::50])


@pytest.mark.gpu
def test_normalize_torch_on_a_gpu_equals_normalize_bit_for_bit(sample_root):
    """CUDA kernels may round otherwise than the CPU's (a division by a host scalar is a multiplication there)."""
    torch = pytest.importorskip("torch", reason="normalize_torch needs PyTorch (evalkit[torch])")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of torch")
    for model in _model_recipes():
        _check_normalize_torch(model, "cuda", sorted(sample_root.rglob("*.JPEG"))[::50])
