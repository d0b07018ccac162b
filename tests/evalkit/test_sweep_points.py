"""Every launcher records its sweep's points before any runs, so a point that failed, for any reason, fails the
gate by name, and a sweep whose every point failed is still the last sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO, tiny_onnx  # noqa: TID252
from .test_cli import imagefolder  # noqa: TID252


def evalkit(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def models(tmp_path) -> Path:
    """A config folder with three models: a tiny real classifier, one of 10 classes (fails when it runs: ImageNet
    has 1000) and one whose ONNX file is missing (refused before anything runs)."""
    folder = tmp_path / "conf" / "model"
    folder.mkdir(parents=True)
    for name, onnx in (("good", tiny_onnx(tmp_path / "good.onnx")), ("ten", tiny_onnx(tmp_path / "ten.onnx", classes=10)),
                       ("gone", tmp_path / "gone.onnx")):
        (folder / f"{name}.yaml").write_text("# @package _global_\ndefaults:\n  - /preprocess: timm\nmodel:\n"
                                             f"  name: {name}\n  arch: none\n  onnx: {onnx}\n")
    return folder.parent


def sweep(models: Path, tmp_path: Path, names: str, launcher: str) -> subprocess.CompletedProcess:
    return evalkit("evalkit", "-m", f"model={names}", "dataset=imagefolder", f"dataset.root={imagefolder(tmp_path, n=3)}",
                   f"results.dir={tmp_path / 'results'}", f"hydra.searchpath=[file://{models}]",
                   f"hydra/launcher={launcher}", "progress=false", cwd=tmp_path)


def gate(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return evalkit("evalkit.gate", "--results", str(tmp_path / "results"), "--last-sweep", *extra, cwd=tmp_path)


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_point_that_fails_when_it_runs_fails_the_gate_by_name(launcher, models, tmp_path):
    ran = sweep(models, tmp_path, "good,ten", launcher)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    judged = gate(tmp_path, "--junit", str(tmp_path / "gate.xml"))
    assert judged.returncode == 1, judged.stdout + judged.stderr
    assert "gate: 0 pass, 0 fail, 1 unverified (of 1 runs); 1 sweep point(s) without a run" in judged.stdout
    assert "no run of point 1 (model=ten): the model has 10 outputs" in judged.stdout
    assert "point 1 (model=ten): the model has 10 outputs" in (tmp_path / "gate.xml").read_text()


def test_a_sweep_refused_before_it_ran_is_the_last_sweep_and_names_every_point(models, tmp_path):
    assert sweep(models, tmp_path, "good", "basic").returncode == 0  # yesterday's sweep: it ran
    refused = sweep(models, tmp_path, "gone,ten", "basic")
    assert refused.returncode == 2 and "nothing was run" in refused.stderr, refused.stderr
    judged = gate(tmp_path)
    assert judged.returncode == 1, judged.stdout + judged.stderr
    assert "(of 0 runs); 2 sweep point(s) without a run" in judged.stdout
    assert "point 0 (model=gone): model.onnx=" in judged.stdout and "no such file" in judged.stdout
    assert "point 1 (model=ten)" in judged.stdout
