"""Composition: groups, schemas that reject typos and wrong types before any work starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from evalkit.config import compose
from evalkit.errors import UserError
from evalkit.preprocess._pil import Interpolation

from ..conftest import REPO, run_cli  # noqa: TID252


def test_default_config_is_the_demo():
    cfg = compose()
    assert cfg.model.name == "tf_efficientnet_lite0" and cfg.runtime.name == "ort" and cfg.dataset.name == "demo"
    assert cfg.model.weights.endswith("efficientnet-lite0-57934424.pth") and cfg.model.hub_id  # the packaged weights
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


@pytest.mark.parametrize("override,advice", [
    ("runtime.batchsize=8", "unknown key runtime.batchsize; did you mean runtime.batch_size?"),
    ("worker=2", "unknown key worker; did you mean workers?"),
    ("dataset.per_clas=2", "unknown key dataset.per_clas; did you mean dataset.per_class?"),
    ("runtime=torch runtime.thread=2", "did you mean runtime.threads?"),  # the selected runtime's schema
    ("dataset.zzz=1", "unknown key dataset.zzz; valid keys of dataset: bad_images, decode, files, layout,"),
    ("+runtime.batchsiz=8", "unknown key runtime.batchsiz; did you mean runtime.batch_size?"),
    ("+worker=2", "unknown key worker; did you mean workers?"),
])
def test_misspelt_key_names_the_schemas_closest_key_never_plus(tmp_path, override, advice):
    out = run_cli(*override.split(), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert advice in out.stderr
    assert "+" not in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("evalkit: ") == 1


@pytest.mark.parametrize("overrides,message", [
    (["runtime.batch_size=-3"], "runtime.batch_size=-3 is out of range: must be >= 1"),
    (["runtime=torch", "runtime.batch_size=0"], "runtime.batch_size=0 is out of range: must be >= 1"),
    (["runtime=trt", "runtime.batch_size=0"], "runtime.batch_size=0 is out of range: must be >= 1"),
    (["runtime.intra_op_threads=-1"], "runtime.intra_op_threads=-1 is out of range: must be >= 0"),
    (["runtime=torch", "runtime.threads=-1"], "runtime.threads=-1 is out of range: must be >= 0"),
    (["runtime=trt", "runtime.latency_iters=0"], "runtime.latency_iters=0 is out of range: must be >= 1"),
    (["workers=-2"], "workers=-2 is out of range: must be >= 0"),
    (["dataset.limit=0"], "dataset.limit=0 is out of range: must be >= 1"),
    (["dataset.per_class=0"], "dataset.per_class=0 is out of range: must be >= 1"),
    (["dataset.num_shards=0"], "dataset.num_shards=0 is out of range: must be >= 1"),
    (["dataset.num_shards=2", "dataset.shard=2"], "dataset.shard=2 is out of range: must be in 0..1 (dataset.num_shards=2)"),
    (["dataset.shard=-1"], "dataset.shard=-1 is out of range: must be in 0..0 (dataset.num_shards=1)"),
    (["results.checkpoint_s=-1"], "results.checkpoint_s=-1.0 is out of range: must be >= 0"),
])
def test_values_out_of_range_name_the_key_and_the_range(overrides, message):
    with pytest.raises(UserError) as e:
        compose(overrides)
    assert str(e.value) == message


def test_import_evalkit_does_not_import_heavy_dependencies():
    code = ("import sys, evalkit, evalkit.cli, evalkit.config; evalkit.config.register(); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt', 'cv2', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("family", ["mmcls", "paddle", "resnest", "square", "timm"])
def test_a_recipe_family_is_chosen_on_the_command_line_with_its_own_defaults(family):
    from evalkit import preprocess

    cfg = compose(["model=cspresnext50", f"preprocess={family}"])
    defaults = preprocess.families()[family].Params()
    if family == "timm":  # the entry's own family: its recipe stays
        assert cfg.preprocess.size == 224 and cfg.preprocess.interpolation is Interpolation.bilinear
    else:
        assert cfg.preprocess == defaults


def test_a_switched_family_takes_the_users_keys_and_refuses_another_familys():
    cfg = compose(["preprocess=paddle", "preprocess.crop=200"])
    assert cfg.preprocess.family == "paddle" and cfg.preprocess.crop == 200
    with pytest.raises(UserError, match=r"unknown key preprocess.crop_pct; did you mean preprocess.crop\?"):
        compose(["preprocess=paddle", "preprocess.crop_pct=0.9"])
    with pytest.raises(UserError, match=r"unknown key preprocess.resize_short; valid keys of preprocess: crop_mode"):
        compose(["preprocess.resize_short=256"])  # the demo's family is timm


def test_the_entrys_own_family_keeps_the_entrys_recipe():
    cfg = compose(["model=mmcls/resnest50", "preprocess=mmcls"])
    assert cfg.preprocess.efficientnet_style is True and cfg.preprocess.resize_short is None


def test_another_architecture_is_another_model():
    pytest.importorskip("timm", reason="checking an architecture needs evalkit[torch]")
    cfg = compose(["model.arch=efficientnet_b0"])
    assert cfg.model.name == "efficientnet_b0" and cfg.model.references == []  # lite0's numbers are not b0's
    assert cfg.model.weights is None and cfg.model.hub_id == "timm/efficientnet_b0.ra_in1k"
    assert compose(["model.arch=efficientnet_b0", "model.name=b0"]).model.name == "b0"
    same = compose(["model=cspresnext50", "model.arch=cspresnext50"])
    assert same.model.name == "cspresnext50" and same.model.references  # the entry's own architecture
    with pytest.raises(UserError, match="model.arch=efficientnet_bx: timm has no such architecture; did you mean"):
        compose(["model.arch=efficientnet_bx"])
