"""Composition: groups, schemas that reject typos and wrong types before any work starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from evalkit.config import compose
from evalkit.errors import UserError
from preprocess._pil import Interpolation

from ..conftest import REPO  # noqa: TID252


def test_default_config_is_the_demo():
    cfg = compose()
    assert cfg.model.name == "tf_efficientnet_lite0" and cfg.runtime.name == "ort" and cfg.dataset.name == "demo"
    assert cfg.preprocess.family == "timm" and cfg.preprocess.interpolation is Interpolation.bicubic
    assert cfg.preprocess.mean == [0.5, 0.5, 0.5]
    assert len(cfg.dataset.files) == 4 and all(" n0" in f for f in cfg.dataset.files)


def test_overrides_reach_the_typed_config():
    cfg = compose(["preprocess.crop_pct=0.9", "runtime.batch_size=8", "dataset=imagefolder", "dataset.root=/x"])
    assert cfg.preprocess.crop_pct == 0.9 and cfg.runtime.batch_size == 8 and cfg.dataset.root == "/x"


@pytest.mark.parametrize("override", [
    "preprocess.crop_pt=0.9",            # misspelt key
    "runtime.batch_size=many",           # wrong type
    "preprocess.interpolation=bicubc",   # not an interpolation
    "model=no_such_model",               # unknown group option
    "+runtime.threads=2",                # key the runtime schema does not have
    "dataset.bad_images=skip",           # not a policy
])
def test_bad_overrides_fail_at_composition(override):
    with pytest.raises((HydraException, OmegaConfBaseException, UserError)):
        compose([override])


def test_import_evalkit_does_not_import_heavy_dependencies():
    code = ("import sys, evalkit, evalkit.cli, evalkit.config; evalkit.config.register(); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt', 'cv2', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
