"""A gate that catches what a nightly must catch, on the real lite0 and the shared photos: a recipe change judged
against the earlier (unverified) run of the same model and images, and reduced precisions judged against fp32."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from evalkit import history
from evalkit.config import compose
from evalkit.run import evaluate

from ..conftest import REPO  # noqa: TID252


def evalkit(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=900)


def test_a_recipe_change_that_costs_points_fails_against_the_earlier_unverified_run(ort_run, lite0_onnx, sample_root,
                                                                                      tmp_path):
    results = tmp_path / "results"
    run, _, _ = ort_run
    first = shutil.copytree(Path(run["config"]["results"]["dir"]) / run["id"], results / run["id"])
    history.add(results / "history.sqlite", first)
    unverified = evalkit("evalkit.gate", "--results", str(results), str(first), cwd=tmp_path)
    assert unverified.returncode == 3, unverified.stdout + unverified.stderr

    changed = evaluate(compose([f"model.onnx={lite0_onnx}", "dataset=imagefolder", f"dataset.root={sample_root}",
                                f"results.dir={results}", "progress=false", "preprocess.crop_pct=1.0",
                                "preprocess.interpolation=bilinear"]))
    top1 = json.loads((changed / "run.json").read_text())["metrics"]["top1"]
    assert top1 < run["metrics"]["top1"] - 1.0  # several points on the same images
    failed = evalkit("evalkit.gate", "--results", str(results), str(changed), cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "history top-1 | **FAIL**" in failed.stdout
    assert "recipe changed: crop_pct 0.875 -> 1.0, interpolation bicubic -> bilinear" in failed.stdout
    assert "McNemar p=" in failed.stdout

    # a person accepts the new recipe: later runs are judged against it
    assert evalkit("evalkit.gate", "--results", str(results), "--accept", str(changed), cwd=tmp_path).returncode == 0
    again = evaluate(compose([f"model.onnx={lite0_onnx}", "dataset=imagefolder", f"dataset.root={sample_root}",
                              f"results.dir={results}", "progress=false", "preprocess.crop_pct=1.0",
                              "preprocess.interpolation=bilinear"]))
    passed = evalkit("evalkit.gate", "--results", str(results), str(again), cwd=tmp_path)
    assert passed.returncode == 0 and "gate: 1 pass, 0 fail, 0 unverified" in passed.stdout, passed.stdout


def sweep(tmp_path: Path, lite0_onnx: Path, sample_root: Path, calibration: Path, launcher: str,
          precisions: str) -> subprocess.CompletedProcess:
    return evalkit("evalkit", "-m", f"precision={precisions}", f"model.onnx={lite0_onnx}", "dataset=imagefolder",
                   f"dataset.root={sample_root}", f"precision.calibration.root={calibration}",
                   f"results.dir={tmp_path / 'results'}", f"hydra/launcher={launcher}", "progress=false", cwd=tmp_path)


def test_an_int8_run_that_lost_accuracy_fails_beside_its_fp32_run_naming_the_pair(lite0_onnx, sample_root, tmp_path):
    black = tmp_path / "black" / "n01440764"  # calibration on one black image: every activation range is wrong
    black.mkdir(parents=True)
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(black / "black.JPEG")
    ran = sweep(tmp_path, lite0_onnx, sample_root, black.parent, "basic", "fp32,int8")
    assert ran.returncode == 0, ran.stderr[-3000:]
    failed = evalkit("evalkit.gate", "--results", str(tmp_path / "results"), "--last-sweep", cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    line = next(ln for ln in failed.stdout.splitlines() if "| int8 vs fp32 |" in ln)
    assert "**FAIL**" in line and "(allowed -1)" in line and "int8 top-1" in line and "vs fp32" in line


def test_a_healthy_fp16_and_int8_sweep_passes(lite0_onnx, sample_root, calibration_root, tmp_path):
    ran = sweep(tmp_path, lite0_onnx, sample_root, calibration_root, "joblib", "fp32,fp16,int8")
    assert ran.returncode == 0, ran.stderr[-3000:]
    judged = evalkit("evalkit.gate", "--results", str(tmp_path / "results"), "--last-sweep", "--allow-unverified",
                     cwd=tmp_path)
    assert judged.returncode == 0, judged.stdout + judged.stderr
    # fp32 has nothing to be checked against on 200 photos; fp16 and int8 pass beside it
    assert "gate: 2 pass, 0 fail, 1 unverified (of 3 runs)" in judged.stdout
    assert "| fp16 vs fp32 | pass |" in judged.stdout and "| int8 vs fp32 | pass |" in judged.stdout
