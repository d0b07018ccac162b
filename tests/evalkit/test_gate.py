"""Gate rules: tolerances by model/runtime/precision, history drop and flips, bad input, few images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from evalkit import history
from evalkit.gate import GateConfig, Rule, gate, limits, load_config

from ..conftest import REPO  # noqa: TID252
from .test_history import make_runs


def run_gate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m evalkit.gate ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "evalkit.gate", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)


def test_later_rules_win_and_patterns_match():
    cfg = GateConfig(tolerance=0.2, rules=[Rule(runtime="trt", tolerance=0.5), Rule(runtime="trt", precision="int8", tolerance=1.0),
                                           Rule(model="vastai/*", max_flips=100)])
    assert limits(cfg, "cspresnext50", "ort", "fp32")["tolerance"] == 0.2
    assert limits(cfg, "cspresnext50", "trt", "fp16")["tolerance"] == 0.5
    assert limits(cfg, "cspresnext50", "trt", "int8")["tolerance"] == 1.0
    assert limits(cfg, "vastai/resnest50", "vamp", "fp32")["max_flips"] == 100


def test_default_config_loads_and_a_typo_is_refused(tmp_path):
    assert load_config(None).tolerance == 0.2
    bad = tmp_path / "gate.yaml"
    bad.write_text("tolerence: 0.3\n")
    try:
        load_config(bad)
    except Exception as e:
        assert "tolerence" in str(e)
    else:
        raise AssertionError("a misspelt key was accepted")


def test_history_drop_and_flips_fail_against_the_last_passing_run(tmp_path):
    first, second = make_runs(tmp_path, 2)
    db = tmp_path / "results" / "history.sqlite"
    for r in (first, second):
        history.add(db, r)
    assert all(c.passed is not False for _, checks in gate([first], db, GateConfig()) for c in checks)
    # the second run lost images: edit its predictions and metrics as a regression would
    predictions = pd.read_csv(second / "predictions.csv")
    predictions["pred1"] = (predictions["label"] + 1) % 1000
    predictions.to_csv(second / "predictions.csv", index=False)
    run = json.loads((second / "run.json").read_text())
    run["metrics"]["top1"] -= 5.0
    (second / "run.json").write_text(json.dumps(run))
    ((_, checks),) = gate([second], db, GateConfig(drop=0.1, max_flips=1))
    result = {c.name: c for c in checks}
    assert result["history top-1"].passed is False and "drop allowed 0.1" in result["history top-1"].detail
    assert result["history flips"].passed is False and first.name in result["history flips"].detail


def test_200_images_are_not_comparable_unless_significantly_worse(ort_run, sample_root, lite0_onnx, tmp_path):
    """The real demo model on 200 photos (90.0 % against timm's 74.83 on 50,000): no verdict; the same photos with
    every label shifted by one class (top-1 near 0): its whole 95 % CI lies below 74.63, so the gate fails."""
    from evalkit.config import compose
    from evalkit.run import evaluate

    run, predictions, _ = ort_run
    results = tmp_path / "results"
    correct = shutil.copytree(Path(run["config"]["results"]["dir"]) / run["id"], results / run["id"])
    passed = run_gate("--results", str(results), str(correct), "--junit", str(tmp_path / "a.xml"), cwd=tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    lo, hi = run["metrics"]["top1_ci95"]
    interval = f"not comparable (n=200, 95 % CI {lo:.3f}–{hi:.3f})"
    assert f"| 90.000 | reference timm | not comparable | {interval}: top-1 90.000 on 200 images vs published 74.830" \
        in passed.stdout
    cases = ET.parse(tmp_path / "a.xml").iter("testcase")
    (skipped,) = [c.find("skipped") for c in cases if c.get("name") == "reference timm"]
    assert skipped.get("message").startswith(interval)

    labels = tmp_path / "shifted.txt"
    labels.write_text("".join(f"{Path(p).relative_to(sample_root)} {(label + 1) % 1000}\n"
                              for p, label in zip(predictions["path"], predictions["label"])))
    shifted = evaluate(compose([f"model.onnx={lite0_onnx}", "dataset=labelfile", f"dataset.root={sample_root}",
                                f"dataset.labels={labels}", f"results.dir={results}", "progress=false"]))
    failed = run_gate("--results", str(results), str(shifted), cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    lo, hi = json.loads((shifted / "run.json").read_text())["metrics"]["top1_ci95"]
    assert hi < 74.83 - 0.2
    assert f"| reference timm | **FAIL** | significantly worse (n=200, 95 % CI {lo:.3f}–{hi:.3f})" in failed.stdout
