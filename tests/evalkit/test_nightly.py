"""The nightly job: a sweep through the joblib launcher, then the gate with its exit code and reports."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ..conftest import REPO, tiny_onnx  # noqa: TID252


def evalkit(module: str, *args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), EVALKIT_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture
def user_conf(tmp_path):
    """A user's own config directory (Hydra search path) with a second model: a tiny real ONNX classifier."""
    onnx = tiny_onnx(tmp_path / "tiny.onnx")
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "tiny.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /preprocess: timm\nmodel:\n  name: tiny\n  arch: none\n"
        f"  onnx: {onnx}\n")
    return tmp_path / "conf"


def test_sweep_then_gate_passes_then_fails_on_a_raised_reference(sample_root, lite0_onnx, cache_dir, user_conf, tmp_path):
    results = tmp_path / "results"
    common = ["dataset=imagefolder", f"dataset.root={sample_root}", f"results.dir={results}", "progress=false",
              f"hydra.searchpath=[file://{user_conf}]", "hydra/launcher=local"]
    sweep = evalkit("evalkit", "-m", "model=demo,tiny", "runtime.intra_op_threads=1,2", *common,
                    cwd=tmp_path, cache=cache_dir)
    assert sweep.returncode == 0, sweep.stderr
    assert "Joblib.Parallel(n_jobs=2" in sweep.stdout + sweep.stderr
    assert len(list(results.glob("*/run.json"))) == 4

    first = evalkit("evalkit.gate", "--results", str(results), "--last-sweep", "--junit", str(tmp_path / "a.xml"),
                    "--markdown", str(tmp_path / "a.md"), cwd=tmp_path, cache=cache_dir)
    # a first sweep on 200 photos has nothing to be checked against: unverified (exit 3), never green
    assert first.returncode == 3, first.stdout + first.stderr
    assert "gate: 0 pass, 0 fail, 4 unverified (of 4 runs)" in first.stdout
    suite = ET.parse(tmp_path / "a.xml").getroot().find("testsuite")  # unverified: skipped, never a passing case
    assert suite.get("failures") == "0" and int(suite.get("tests")) == 8 and int(suite.get("skipped")) == 8
    # 200 images cannot confirm a number measured on 50,000: no verdict, no failure
    assert ("| tf_efficientnet_lite0 | ort | fp32 | 90.000 | unverified | reference timm | not comparable "
            "| not comparable (n=200, 95 % CI ") in (tmp_path / "a.md").read_text()

    # The same model again, now against a published top-1 above what it scores.
    again = evalkit("evalkit", "-m", "model=demo", "runtime.intra_op_threads=1",
                    "model.references.0.top1=99.0", *common, cwd=tmp_path, cache=cache_dir)
    assert again.returncode == 0, again.stderr
    failed = evalkit("evalkit.gate", "--results", str(results), "--last-sweep", "--junit", str(tmp_path / "b.xml"),
                     cwd=tmp_path, cache=cache_dir)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    suite = ET.parse(tmp_path / "b.xml").getroot().find("testsuite")
    failures = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failures] == [("tf_efficientnet_lite0.ort.fp32", "reference timm")]
    assert "99.000" in failures[0].find("failure").get("message")
    # its history checks passed: same predictions as the earlier passing run
    history_cases = [c for c in suite.iter("testcase") if c.get("name").startswith("history")]
    assert history_cases and all(c.find("failure") is None and c.find("skipped") is None for c in history_cases)


def test_nightly_experiment_composes_the_matrix_and_a_slurm_launcher(tmp_path, cache_dir):
    local = evalkit("evalkit", "experiment=nightly", "--cfg", "hydra", cwd=tmp_path, cache=cache_dir)
    assert local.returncode == 0, local.stderr
    assert "JoblibLauncher" in local.stdout and "model: cspresnet50,cspresnext50" in local.stdout
    slurm = evalkit("evalkit", "experiment=nightly", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                    "--cfg", "hydra", cwd=tmp_path, cache=cache_dir)
    assert slurm.returncode == 0, slurm.stderr
    assert "SlurmLauncher" in slurm.stdout and "partition: gpu" in slurm.stdout and "gpus_per_node: 1" in slurm.stdout
