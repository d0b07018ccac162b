"""The user's own command as written: a real dataset for real models, every missing prerequisite listed at once
before any work, and Hydra's rule that the last value of a key wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.contract import cuda_devices

from ..conftest import REPO, tiny_onnx  # noqa: TID252
from .test_cli import imagefolder  # noqa: TID252

NIGHTLY = ["cspresnet50", "cspresnext50", "cspdarknet53", "resnest50d", "resnest101e", "resnest200e", "resnest269e"]


def evalkit(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m evalkit ARGS`` as a user without ImageNet configured runs it, offline with an empty hub cache."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "EVALKIT_IMAGENET", "EVALKIT_CONFIG"))}
    environ.update({"PYTHONPATH": str(REPO), "HF_HOME": str(cwd / "hf"), "HF_HUB_OFFLINE": "1",
                    "EVALKIT_CONFIG_DIR": str(cwd / "no-config"), **env})
    return subprocess.run([sys.executable, "-m", "evalkit", *args, "progress=false"], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=600)


def run_json(results: Path) -> dict:
    return json.loads(next(results.glob("*/run.json")).read_text())


def test_a_real_model_without_a_dataset_says_how_to_set_one_and_never_scores_the_demo_photos(tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    out = evalkit("model=cspresnext50", f"model.onnx={onnx}", f"results.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "export EVALKIT_IMAGENET=" in out.stderr and "dataset.root=PATH" in out.stderr
    assert not (tmp_path / "r").exists()


def test_evalkit_imagenet_points_at_wnid_folders_or_a_flat_folder_with_its_label_file(sample_root, tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    out = evalkit("model=cspresnext50", f"model.onnx={onnx}", f"results.dir={tmp_path / 'r'}", cwd=tmp_path,
                  EVALKIT_IMAGENET=str(sample_root))
    assert out.returncode == 0, out.stderr
    run = run_json(tmp_path / "r")
    assert run["dataset"]["name"] == "imagenet" and run["metrics"]["n"] == 200
    assert run["dataset"]["root"] == str(sample_root)
    # the same images flat, with a val.txt beside them
    flat = tmp_path / "flat" / "val"
    flat.mkdir(parents=True)
    lines = []
    for image in sorted(imagefolder(tmp_path, n=3).rglob("*.JPEG")):
        (flat / image.name).write_bytes(image.read_bytes())
        lines.append(f"{image.name} {sorted(p.name for p in (tmp_path / 'val').iterdir()).index(image.parent.name)}")
    (flat.parent / "val.txt").write_text("\n".join(lines) + "\n")
    out = evalkit(f"model.onnx={onnx}", "model=cspresnext50", f"results.dir={tmp_path / 'flat-r'}", cwd=tmp_path,
                  EVALKIT_IMAGENET=str(flat))
    assert out.returncode == 0, out.stderr
    assert run_json(tmp_path / "flat-r")["metrics"]["n"] == 3


def test_the_users_config_folder_says_where_imagenet_is(tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    config = tmp_path / "my-config" / "dataset"
    config.mkdir(parents=True)
    (config / "imagenet.yaml").write_text(
        f"defaults: [imagenet_schema, _self_]\nname: imagenet\nroot: {imagefolder(tmp_path, n=3)}\n")
    out = evalkit("model=cspresnext50", f"model.onnx={onnx}", f"results.dir={tmp_path / 'r'}", cwd=tmp_path,
                  EVALKIT_CONFIG_DIR=str(tmp_path / "my-config"))
    assert out.returncode == 0, out.stderr
    assert run_json(tmp_path / "r")["metrics"]["n"] == 3


def test_the_nightly_with_no_weights_and_no_dataset_lists_every_model_before_running_any(tmp_path):
    out = evalkit("experiment=nightly", f"results.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "8 prerequisites missing; nothing was run" in out.stderr
    for model in NIGHTLY:
        assert f"[model={model}]" in out.stderr
    assert "EVALKIT_IMAGENET" in out.stderr and "[every point]" in out.stderr
    assert "Traceback" not in out.stderr and not list((tmp_path / "r").glob("*/run.json"))


@pytest.mark.skipif(cuda_devices() > 0, reason="this machine has a CUDA GPU: the GPU checks pass here")
def test_one_run_lists_every_missing_prerequisite_at_once(sample_root, tmp_path):
    out = evalkit("model=cspresnext50", "runtime=trt", f"results.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    said = out.stderr
    assert "prerequisites missing; nothing was run" in said
    assert "no CUDA GPU" in said and "timm/cspresnext50.ra_in1k" in said and "EVALKIT_IMAGENET" in said
    gpu = evalkit("runtime=torch", "runtime.device=cuda", "dataset=imagefolder", f"dataset.root={sample_root}",
                  f"results.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert gpu.returncode == 2 and "runtime.device=cuda needs a CUDA GPU" in gpu.stderr, gpu.stderr


def test_the_last_value_of_a_key_wins_as_in_hydra(tmp_path):
    out = evalkit(f"model.onnx={tiny_onnx(tmp_path / 'm.onnx')}", "dataset=imagefolder",
                  f"dataset.root={imagefolder(tmp_path, n=3)}", "runtime.batch_size=8", "runtime.batch_size=16",
                  f"results.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert run_json(tmp_path / "r")["runtime"]["batch_size"] == 16


@pytest.mark.parametrize("values", [["/d/val-000000.tar", "/d/val-000001.tar", "/d/val-000002.tar", "/d/val-000003.tar"],
                                    ["/d/val-00.tar", "/d/val-07.tar"]])
def test_a_shell_expanded_brace_pattern_is_refused_with_the_quoting_advice(values, tmp_path):
    out = evalkit("dataset=tar", *(f"dataset.shards={v}" for v in values), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "zero-padded number" in out.stderr and """'dataset.shards="/data/imagenet-val-{000000..000063}.tar"'""" in out.stderr
