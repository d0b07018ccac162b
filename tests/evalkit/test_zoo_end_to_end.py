"""Every zoo model exports (random weights) and evaluates end to end through ONNX Runtime."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from evalkit import preprocess
from evalkit import zoo
from evalkit.classes import imagenet1k
from evalkit.config import compose
from evalkit.export import export
from evalkit.run import evaluate

from ..conftest import run_cli  # noqa: TID252

torch = pytest.importorskip("torch", reason="exporting zoo architectures needs evalkit[torch]")
pytest.importorskip("cv2", reason="the zoo's cv2 recipes need evalkit[opencv]")

LARGE = {"resnest200e", "resnest269e"}


def params(name: str):
    model = zoo.load(name).model
    marks = [pytest.mark.slow] if model.arch in LARGE else []
    return pytest.param(name, marks=marks, id=name)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two JPEGs of different sizes in synset folders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(500, 375), (333, 480)]):
        folder = root / imagenet1k().wnids[i]
        folder.mkdir()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.JPEG")
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One random-weight ONNX per (architecture, input size), shared by the sources that use it."""
    folder, done = tmp_path_factory.mktemp("onnx"), {}

    def get(name: str):
        cfg = zoo.load(name)
        recipe = preprocess.build(cfg.preprocess)
        key = (cfg.model.arch, recipe.output_shape)
        if key not in done:
            path = folder / f"{cfg.model.arch}-{recipe.output_shape[1]}.onnx"
            random = dataclasses.replace(cfg.model, hub_id=None)  # no checkpoint fetched: random weights
            figures = export(random, recipe, path)
            assert figures["max_abs_diff"] < 1e-2 and figures["top1_agreement"] >= 87.5, figures
            done[key] = path
        return done[key]

    return get


@pytest.mark.parametrize("name", [params(n) for n in zoo.names() if n != "tf_efficientnet_lite0"])
def test_zoo_model_exports_and_evaluates(name, exported, photos, tmp_path):
    onnx = exported(name)
    run_dir = evaluate(compose([f"model={name}", f"model.onnx={onnx}", "dataset=imagefolder",
                                f"dataset.root={photos}", f"results.dir={tmp_path}", "progress=false"]))
    run = json.loads((run_dir / "run.json").read_text())
    assert run["metrics"]["n"] == 2 and run["model"]["name"] == name
    assert run["recipe"]["family"] == zoo.load(name).preprocess.family
    assert len(run["reference"]["rows"]) == len(zoo.load(name).model.references)


def test_user_weights_are_exported_on_first_use_and_cached(photos, tmp_path):
    """The real flow: model.weights=PTH, no ONNX given."""
    import timm

    weights = tmp_path / "cspresnext50.pth"
    torch.save(timm.create_model("cspresnext50", pretrained=False).state_dict(), weights)
    args = ["model=cspresnext50", f"model.weights={weights}", "dataset=imagefolder", f"dataset.root={photos}"]
    first = run_cli(*args, f"results.dir={tmp_path / 'a'}", cwd=tmp_path, cache=tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    assert "exporting cspresnext50" in first.stderr and "top-1 agreement 100.0%" in first.stderr
    second = run_cli(*args, f"results.dir={tmp_path / 'b'}", cwd=tmp_path, cache=tmp_path / "cache")
    assert second.returncode == 0 and "exporting" not in second.stderr
