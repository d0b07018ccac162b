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
from evalkit.config import compose
from evalkit.gate import GateConfig, Rule, gate, limits, load_config
from evalkit.run import evaluate

from ..conftest import REPO, tiny_onnx  # noqa: TID252
from .test_cli import imagefolder
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
    # nothing failed, and nothing could be checked: unverified, never green
    assert passed.returncode == 3, passed.stdout + passed.stderr
    assert "gate: 0 pass, 0 fail, 1 unverified (of 1 runs)" in passed.stdout
    assert run_gate("--results", str(results), str(correct), "--allow-unverified", cwd=tmp_path).returncode == 0
    lo, hi = run["metrics"]["top1_ci95"]
    interval = f"not comparable (n=200, 95 % CI {lo:.3f}–{hi:.3f})"
    assert f"| 90.000 | unverified | reference timm | not comparable | {interval}: top-1 90.000 on 200 images vs published 74.830" \
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


def planned_sweep(tmp_path: Path, values: tuple[int, ...], *extra: str) -> tuple[Path, dict[int, list[str]]]:
    """A sweep as evalkit.slurm records it (its points and their SLURM jobs), none of its points run yet."""
    root, onnx = imagefolder(tmp_path, n=4), tiny_onnx(tmp_path / "m.onnx")
    results = tmp_path / "results"
    points = {n: [f"model.onnx={onnx}", "model.references=[]", "dataset=imagefolder", f"dataset.root={root}",
                  f"results.dir={results}", "progress=false", *extra, f"runtime.batch_size={v}"]
              for n, v in enumerate(values)}
    sweep_dir = results / ".sweeps" / "20260101T000000"
    history.plan_sweep(sweep_dir, points, {n: f"7_{n}" for n in points})
    return sweep_dir, points


def run_point(sweep_dir: Path, points: dict[int, list[str]], n: int) -> Path:
    """What a point's job does: its run, in the sweep, then the mark that it ran."""
    run_dir = evaluate(compose(points[n]), sweep=sweep_dir.name)
    history.point_done(sweep_dir, n, run_dir)
    return run_dir


def test_a_sweep_point_without_a_run_fails_the_gate_by_name(tmp_path):
    sweep_dir, points = planned_sweep(tmp_path, (1, 2, 4))
    for n in (0, 1):
        run_point(sweep_dir, points, n)
    results = sweep_dir.parent.parent
    failed = run_gate("--results", str(results), "--last-sweep", "--junit", str(tmp_path / "a.xml"), cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "gate: 0 pass, 0 fail, 2 unverified (of 2 runs); 1 sweep point(s) without a run" in failed.stdout
    assert "gate: no run of point 2 (runtime.batch_size=4; SLURM job 7_2)" in failed.stdout
    suite = ET.parse(tmp_path / "a.xml").getroot().find("testsuite")
    assert [c.find("failure").get("message") for c in suite.iter("testcase") if c.find("failure") is not None] == [
        "point 2 (runtime.batch_size=4; SLURM job 7_2): no run"]

    run_point(sweep_dir, points, 2)
    # runs 1 and 2 now have an earlier run to be checked against; run 0, the first, has none
    passed = run_gate("--results", str(results), "--last-sweep", cwd=tmp_path)
    assert passed.returncode == 3, passed.stdout + passed.stderr
    assert "gate: 2 pass, 0 fail, 1 unverified (of 3 runs)" in passed.stdout and "no run" not in passed.stdout
    assert run_gate("--results", str(results), "--last-sweep", "--allow-unverified", cwd=tmp_path).returncode == 0


def test_the_last_sweep_is_one_whose_every_point_failed_not_the_one_before(tmp_path):
    """A nightly whose jobs were all cancelled has no run at all: the gate must not pass yesterday's instead."""
    sweep_dir, points = planned_sweep(tmp_path, (1, 2))
    for n in points:
        run_point(sweep_dir, points, n)
    later = sweep_dir.with_name("20260102T000000")
    history.plan_sweep(later, points, {n: f"8_{n}" for n in points})
    failed = run_gate("--results", str(sweep_dir.parent.parent), "--last-sweep", cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "gate: 0 pass, 0 fail, 0 unverified (of 0 runs); 2 sweep point(s) without a run" in failed.stdout
    assert ("no run of point 0 (runtime.batch_size=1; SLURM job 8_0); point 1 (runtime.batch_size=2; SLURM job 8_1)"
            in failed.stdout)
