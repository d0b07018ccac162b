"""The transform contract, checked on every transform registered in the ``evalkit.transforms`` entry points.

Each turns a real small ONNX classifier into one ONNX Runtime loads, with the same input and output, and
does it deterministically (the core caches the result by the key of its inputs).
"""

from __future__ import annotations


import numpy as np
import pytest

from evalkit.contract import GROUPS, PrecisionOptions, load, plugins

from ..conftest import tiny_onnx  # noqa: TID252
from .test_runtimes import HEAVY, python

TRANSFORMS = sorted(plugins(GROUPS["transform"]))


def test_the_builtins_are_registered():
    assert {"fp16", "int8"} <= set(TRANSFORMS)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_module_imports_lazily_and_names_its_tools(name):
    out = python(f"""
        import sys
        from evalkit.contract import GROUPS, PRECISIONS, load
        module = load(GROUPS["transform"], {name!r})
        assert {name!r} in PRECISIONS and callable(module.apply)
        assert module.TOOLS and all(isinstance(t, str) for t in module.TOOLS)
        print([m for m in {HEAVY!r} if m in sys.modules])
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", TRANSFORMS)
def test_applied_to_a_small_classifier_it_gives_the_same_interface_deterministically(name, sample_root, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="transforms are checked through evalkit[ort]")
    from evalkit import preprocess
    from evalkit.config import ModelConfig
    from evalkit.dataset import load as load_dataset
    from evalkit.plugins import make_context
    from evalkit.preprocess.timm import Params

    source = tiny_onnx(tmp_path / "m.onnx")
    images = load_dataset(load(GROUPS["reader"], "imagefolder").Options(root=str(sample_root), limit=6))
    module = load(GROUPS["transform"], name)
    context = make_context(ModelConfig(name="m", arch="m", onnx=str(source)), preprocess.build(Params()), tmp_path,
                           images if getattr(module, "CALIBRATED", False) else [], None)
    outputs = [tmp_path / f"{name}-{i}.onnx" for i in range(2)]
    for out in outputs:
        module.apply(PrecisionOptions(name=name), source, out, context)
    assert outputs[0].read_bytes() == outputs[1].read_bytes()

    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    reference, transformed = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (source, outputs[0]))
    assert [(i.name, i.type) for i in transformed.get_inputs()] == [(i.name, i.type) for i in reference.get_inputs()]
    assert [(o.name, o.type) for o in transformed.get_outputs()] == [(o.name, o.type) for o in reference.get_outputs()]
    got, want = transformed.run(None, {"input": x})[0], reference.run(None, {"input": x})[0]
    assert got.shape == want.shape and np.isfinite(got).all()
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99


def test_an_unknown_precision_transform_name_is_refused():
    with pytest.raises(Exception, match="unknown transform"):
        load(GROUPS["transform"], "int4")
