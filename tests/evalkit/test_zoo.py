"""The model zoo holds every published number of RECIPES.md section C, each with its recipe."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evalkit import preprocess
from evalkit import zoo
from evalkit.config import compose

from ..conftest import REPO  # noqa: TID252

# RECIPES.md section C: (model=, top-1, top-5) for every published number, by source.
PUBLISHED = [
    # C.1 CSPNet, timm (v0.6.5 csv; v0.6.12, v0.5.4, v1.0.9 csv)
    ("cspresnet50", 79.582, 94.704), ("cspresnext50", 80.050, 94.946), ("cspdarknet53", 80.062, 95.084),
    ("cspresnet50", 79.582, 94.708), ("cspresnext50_256", 80.544, 95.324), ("cspdarknet53", 80.056, 95.086),
    ("cspresnet50", 79.576, 94.702), ("cspresnext50", 80.052, 94.950), ("cspdarknet53", 80.050, 95.092),
    ("cspresnet50", 79.588, 94.690), ("cspresnext50_256", 80.552, 95.330), ("cspdarknet53", 80.106, 95.068),
    # mmcls v0.23.1
    ("mmcls/cspresnet50", 79.55, 94.68), ("mmcls/cspresnext50", 79.96, 94.96), ("mmcls/cspdarknet53", 80.05, 95.07),
    # PaddleClas v2.5.0 docs; MindSpore 910 and 310; Ascend ModelZoo (two commits, HEAD, paper)
    ("ppcls/cspdarknet53", 77.25, 93.55), ("mindspore/cspdarknet53", 78.48, 94.21), ("mindspore/cspdarknet53", 78.458, 94.254),
    ("ascend/cspresnext50", 80.06, 94.94), ("ascend/cspresnext50", 80.05, 94.94), ("ascend/cspresnext50_ais", 79.79, None),
    ("ascend/cspresnext50", 77.9, 94.0),
    # VastAI: copied timm and mmcls rows, the mislabelled ppcls row, VACC measurements
    ("vastai/timm_cspresnet50", 79.582, 94.704), ("vastai/timm_cspresnext50", 80.050, 94.946),
    ("vastai/timm_cspdarknet53", 80.062, 95.084), ("vastai/mmcls_cspresnet50", 79.55, 94.68),
    ("vastai/mmcls_cspresnext50", 79.96, 94.96), ("vastai/mmcls_cspdarknet53", 80.05, 95.07),
    ("vastai/ppcls_cspdarknet53", 78.0, 94.1), ("vastai/timm_cspdarknet53", 79.19, 94.496),
    ("vastai/timm_cspdarknet53", 78.842, 94.325), ("vastai/mmcls_cspdarknet53", 79.303, 94.724),
    ("vastai/mmcls_cspdarknet53", 79.168, 94.649), ("vastai/ppcls_cspdarknet53", 77.652, 93.94),
    ("vastai/ppcls_cspdarknet53", 58.024, 81.28),
    # C.2 ResNeSt: official PyTorch and Gluon
    ("official/resnest50", 81.03, None), ("official/resnest101", 82.83, None), ("official/resnest200", 83.84, None),
    ("official/resnest269", 84.54, None), ("official/resnest50", 81.04, None), ("official/resnest101", 82.81, None),
    ("official/resnest200", 83.88, None), ("official/resnest269", 84.53, None),
    # timm v0.6.5, v0.5.4, v1.0.9
    ("resnest50d", 80.982, 95.380), ("resnest101e", 82.890, 96.318), ("resnest200e", 83.828, 96.892), ("resnest269e", 84.520, 96.986),
    ("resnest50d", 80.962, 95.378), ("resnest101e", 82.876, 96.312), ("resnest200e", 83.848, 96.890), ("resnest269e", 84.524, 96.986),
    ("resnest50d", 80.958, 95.372), ("resnest101e", 82.916, 96.310), ("resnest200e", 83.872, 96.876), ("resnest269e", 84.540, 96.990),
    # mmcls, PaddleClas v2.4.0 and develop, VastAI copied and measured
    ("mmcls/resnest50", 81.13, 95.59), ("mmcls/resnest101", 82.32, 96.24), ("mmcls/resnest200", 82.41, 96.22), ("mmcls/resnest269", 82.70, 96.28),
    ("ppcls/resnest50", 80.83, 95.42), ("ppcls/resnest50", 81.02, 95.46), ("ppcls/resnest101", 82.79, 96.42),
    ("ppcls/resnest200", 84.18, 96.98), ("ppcls/resnest269", 84.44, 96.98),
    ("vastai/resnest50", 81.04, None), ("vastai/resnest101", 82.83, None), ("vastai/resnest200", 83.84, None),
    ("vastai/resnest269", 84.54, None), ("vastai/resnest101", 82.8, 96.24),
]


@pytest.fixture(scope="module")
def table():
    return zoo.table()


@pytest.mark.parametrize("model,top1,top5", PUBLISHED, ids=lambda v: str(v))
def test_every_published_number_is_in_the_zoo(table, model, top1, top5):
    rows = table[(table["model"] == model) & (table["top1"] == top1)]
    assert len(rows) >= 1, f"{model} {top1} missing"
    if top5 is not None:
        assert top5 in set(rows["top5"])


def test_every_reference_names_its_source_and_where_it_comes_from():
    for name in zoo.names():
        for r in zoo.load(name).model.references:
            assert r.source and r.url and r.setting, (name, r.source)


def test_the_traps_are_data():
    t = zoo.table()
    status = t.set_index(["model", "top1"])["status"]
    # timm cspresnext50: the table number is at 224/0.875, the current config at 256/0.887
    assert status[("cspresnext50", 80.050)] == "ok"
    assert status[("cspresnext50_256", 80.050)].startswith("other setting: size=256 (measured at 224)")
    assert status[("cspresnext50", 80.544)].startswith("other setting")
    # VastAI's "ppcls cspdarknet53 78.0/94.1" is PaddleClas DarkNet53
    assert status[("vastai/ppcls_cspdarknet53", 78.0)].startswith("not this model") and "DarkNet53" in status[("vastai/ppcls_cspdarknet53", 78.0)]
    # MindSpore's cspdarknet53 is its own training, not timm's weights
    assert "MindSpore" in zoo.load("mindspore/cspdarknet53").model.weights_origin
    assert status[("mindspore/cspdarknet53", 80.062)].startswith("not this model")


def test_model_picks_timm_by_default_and_other_sources_by_path():
    assert compose(["model=cspresnext50"]).model.source == "timm"
    mm = compose(["model=mmcls/cspresnext50"])
    assert mm.model.source == "mmcls" and mm.preprocess.family == "mmcls" and mm.preprocess.resize_short == 256


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_composes_with_a_recipe_of_its_input_size(name):
    cfg = zoo.load(name)
    recipe = preprocess.build(cfg.preprocess)
    assert cfg.model.name == name and recipe.output_shape[0] == 3
    assert cfg.model.params_m and cfg.model.gmacs


def test_parameter_counts_are_the_architectures(table):
    timm = pytest.importorskip("timm", reason="counting parameters needs evalkit[torch]")
    for arch, params in table.groupby("arch")["params_m"].first().items():
        net = timm.create_model(arch, pretrained=False)
        assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == params, arch


def test_zoo_command_filters_by_name_and_source():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "evalkit.zoo", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout

    out = run("cspresnext50")
    assert "mmcls/cspresnext50" in out and "80.050" in out and "resnest" not in out
    out = run("--source", "ppcls")
    assert "ppcls/resnest269" in out and "84.440" in out and "timm v0.6.5" not in out


def test_every_entry_says_where_its_weights_come_from(table):
    """A hub checkpoint of the entry's architecture (timm/<arch>.<tag>) where its weights are timm's, else where its
    source publishes them; `python -m evalkit.zoo` shows it."""
    for name in zoo.names():
        model = zoo.load(name).model
        if model.hub_id:
            assert model.hub_id.startswith(f"timm/{model.arch}."), name
        else:
            assert model.weights_url and model.source in ("ppcls", "mindspore", "vastai"), name
    assert set(table["weights"]) >= {"hf-hub:timm/cspresnext50.ra_in1k", "hf-hub:timm/resnest50d.in1k"}
    assert zoo.DEMO not in zoo.names() and "demo" not in set(table["model"])
    out = subprocess.run([sys.executable, "-m", "evalkit.zoo", "resnest50"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "weights" in out.splitlines()[0] and "hf-hub:timm/resnest50d.in1k" in out and "PaddleClas" in out
