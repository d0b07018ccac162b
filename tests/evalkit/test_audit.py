"""The audit on the real demo model and the shared photos: source (torch) -> export (ORT) -> recipe (a VastAI square
recipe) -> precision (int8 Q/DQ simulated) -> device (OpenVINO int8 kernels, or an Ascend dump)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import audit

from ..conftest import REPO  # noqa: TID252
from ..runtimes import dumps  # noqa: TID252

pytest.importorskip("torch", reason="the source step runs the weights in PyTorch (evalkit[torch])")
pytest.importorskip("openvino", reason="the device step runs OpenVINO (evalkit[openvino])")

#: vastai/resnest50's recipe crops 224 (lite0's input size) from a 328 square; lite0's own mean/std replace
#: ResNeSt's, which belong to other weights
DEPLOY = ["deploy.recipe=vastai/resnest50", "deploy.preprocess.mean=[0.5,0.5,0.5]",
          "deploy.preprocess.std=[0.5,0.5,0.5]", "deploy.precision=int8"]


def run_audit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m evalkit.audit ARGS`` in a fresh process, as a user runs it."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "evalkit.audit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def written(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    folder = Path(out.stdout.strip().splitlines()[-1].removeprefix("audit written to "))
    return json.loads((folder / "audit.json").read_text()) | {"folder": str(folder)}


def run_dirs(results: Path) -> set[Path]:
    return {p.parent for p in results.glob("*/run.json")}


@pytest.fixture(scope="module")
def setting(sample_root, calibration_root, tmp_path_factory) -> tuple[Path, list[str]]:
    """(the working folder, the source's overrides) shared by the audits of this module: their steps are reused."""
    work = tmp_path_factory.mktemp("audit")
    return work, ["model=demo", "dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=50",
                  f"results.dir={work / 'results'}", "results.save_logits=true", "progress=false",
                  f"precision.calibration.root={calibration_root}"]


@pytest.fixture(scope="module")
def openvino_audit(setting) -> dict:
    work, source = setting
    return written(run_audit(*source, *DEPLOY, "deploy.runtime=openvino", cwd=work))


def correct(run_dir: str) -> pd.Series:
    p = pd.read_csv(Path(run_dir) / "predictions.csv").set_index("id")
    return p["pred1"] == p["label"]


def test_the_chain_splits_the_gap_into_its_steps(openvino_audit):
    steps = openvino_audit["steps"]
    assert [s["name"] for s in steps] == ["source", "export", "recipe", "precision", "device"]
    assert openvino_audit["skipped"] == []
    assert [(s["runtime"], s["recipe"]) for s in steps] == [("torch", "timm"), ("ort", "timm"), ("ort", "square"),
                                                           ("ort", "square"), ("openvino", "square")]
    assert steps[3]["precision"] == "int8 (int8 Q/DQ simulated in fp32)"
    assert steps[4]["precision"].startswith("int8 (int8 kernels")
    assert openvino_audit["published"]["top1"] == 74.83 and steps[0]["against"] == "published"
    # the deltas sum to the end-to-end delta: in images exactly, in points to float rounding
    assert sum(s["delta_top1"] for s in steps) == pytest.approx(openvino_audit["end_to_end"]["delta_top1"], abs=1e-9)
    assert openvino_audit["end_to_end"]["delta_top1"] == pytest.approx(steps[-1]["top1"] - 74.83, abs=1e-9)
    n = openvino_audit["n"]
    assert n == 50 and all(s["n"] == n for s in steps)
    for before, after in zip(steps, steps[1:]):
        a, b = correct(before["run_dir"]), correct(after["run_dir"])
        assert a.index.equals(b.index)
        assert after["gained"] == sorted(b.index[b & ~a]) and after["lost"] == sorted(a.index[a & ~b])
        assert len(after["gained"]) - len(after["lost"]) == b.sum() - a.sum()
        assert after["delta_top1"] == pytest.approx(100 * (b.sum() - a.sum()) / n, abs=1e-9)
        assert after["significant"] == (after["p_value"] < 0.05)
    for s in steps:
        assert json.loads((Path(s["run_dir"]) / "run.json").read_text())["id"] == s["run_id"]
    calibration = steps[3]["calibration"]
    assert calibration["images"] > 0 and calibration["overlapping_images"] == 0
    png = Path(openvino_audit["folder"]) / "waterfall.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_auditing_again_evaluates_nothing(setting, openvino_audit):
    work, source = setting
    before = run_dirs(work / "results")
    out = run_audit(*source, *DEPLOY, "deploy.runtime=openvino", cwd=work)
    again = written(out)
    assert run_dirs(work / "results") == before
    assert "all steps reused: nothing evaluated" in out.stdout
    assert [s["run_dir"] for s in again["steps"]] == [s["run_dir"] for s in openvino_audit["steps"]]
    assert all(s["reused"] for s in again["steps"])


def test_a_step_that_changes_nothing_is_skipped(setting, openvino_audit):
    """ONNX Runtime without its int8 kernels is the precision step's setting: no device step."""
    work, source = setting
    before = run_dirs(work / "results")
    found = written(run_audit(*source, *DEPLOY, "deploy.runtime=ort", cwd=work))
    assert found["skipped"] == [{"name": "device", "reason": "the same setting as the precision step"}]
    assert run_dirs(work / "results") == before


@pytest.fixture(scope="module")
def ascend_dump(setting, openvino_audit) -> tuple[Path, list[str]]:
    """An Ascend benchmark dump of the int8 step's logits in which three images it had right now rank their second
    class first; (the dump folder, those images)."""
    work, _ = setting
    int8 = Path(openvino_audit["steps"][3]["run_dir"])
    predictions, logits = pd.read_csv(int8 / "predictions.csv"), np.load(int8 / "logits.npy")
    right = np.flatnonzero((predictions["pred1"] == predictions["label"]).to_numpy())[:3]
    for i in right:
        first, second = np.argsort(-logits[i])[:2]
        logits[i, [first, second]] = logits[i, [second, first]]
    folder = dumps.benchmark(work / "dump" / "dumpOutput_device0", list(predictions["id"]), logits, "bin")
    return folder, sorted(predictions["id"][right])


def test_an_ascend_dump_as_the_device(setting, openvino_audit, ascend_dump):
    work, source = setting
    folder, changed = ascend_dump
    found = written(run_audit(*source, *DEPLOY, "deploy.runtime=ascend", f"deploy.runtime.dump_dir={folder}",
                              cwd=work))
    steps = found["steps"]
    assert [s["run_dir"] for s in steps[:4]] == [s["run_dir"] for s in openvino_audit["steps"][:4]]
    device = steps[4]
    assert device["runtime"] == "ascend" and not device["reused"]
    assert device["lost"] == changed and device["gained"] == []
    assert device["delta_top1"] == pytest.approx(-100 * 3 / 50)


def test_a_dump_missing_images_is_refused_unless_allowed(setting, ascend_dump):
    work, source = setting
    folder = shutil.copytree(ascend_dump[0], work / "partial" / "dumpOutput_device0")
    next(folder.glob("*_1.bin")).unlink()
    refused = run_audit(*source, *DEPLOY, "deploy.runtime=ascend", f"deploy.runtime.dump_dir={folder}", cwd=work)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "device step" in refused.stderr and "1 images have no output" in refused.stderr
    found = written(run_audit(*source, *DEPLOY, "deploy.runtime=ascend", f"deploy.runtime.dump_dir={folder}",
                              "deploy.runtime.allow_missing=true", cwd=work))
    assert found["steps"][4]["counted_wrong"] == 1
    assert any("no output for 1 images" in w for w in found["warnings"])


def test_onnx_only_overlapping_calibration_and_skipped_steps(setting, lite0_onnx, sample_root):
    """No weights: the chain starts at the export; int8 calibrated on the evaluated images is said loudly."""
    work, _ = setting
    out = run_audit("model=demo", f"model.onnx={lite0_onnx}", "model.weights=null", "model.hub_id=null",
                    "dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=50",
                    f"results.dir={work / 'results'}", "progress=false", "precision.calibration.size=8",
                    "deploy.precision=int8", cwd=work)
    found = written(out)
    assert [s["name"] for s in found["steps"]] == ["export", "precision"]
    assert {s["name"]: s["reason"] for s in found["skipped"]} == {
        "source": "no PyTorch weights (model.onnx only): the audit starts at the export",
        "recipe": "no deploy.recipe: the deployment uses the source's recipe",
        "device": "no deploy.runtime: no device step"}
    assert found["steps"][1]["calibration"]["overlapping_images"] == 8
    assert any("shares 8 images with the evaluated ones" in w for w in found["warnings"])
    assert "WARNING: the precision step's int8 calibration shares 8 images" in out.stderr


def test_help(tmp_path):
    out = run_audit("--help", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m evalkit.audit")


@pytest.mark.parametrize("args,message", [
    (["deploy.precision=int4"], "deploy.precision=int4 is not one of fp32, fp16, bf16, int8"),
    (["deploy.recipe=vastai/resnest5"], "deploy.recipe=vastai/resnest5 is not a zoo entry; did you mean"),
    (["runtime=ort"], "the audit sets each step's runtime and precision itself"),
    (["deploy.runtime.dump_dir=x"], "name it with deploy.runtime=NAME"),
    (["deploy.runtim=openvino"], "unknown key deploy.runtim; did you mean deploy.runtime?"),
    (["audit.alpha=2"], "audit.alpha=2 must lie between 0 and 1"),
])
def test_bad_input_is_one_message_and_exit_2(tmp_path, args, message):
    out = run_audit(*args, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evalkit: error: ") and message in lines[0]


def test_the_summary_names_the_significant_steps_and_what_to_fix_first():
    def step(name, delta, p, flips=1):
        return {"name": name, "delta_top1": delta, "p_value": p, "significant": p < 0.05, "flips": flips,
                "top1": 0.0}

    rows = [step("source", -0.5, 0.3, None), step("export", 0.0, 1.0, 0), step("recipe", -0.31, 0.01),
            step("precision", -0.6, 0.04), step("device", -0.06, 0.5)]
    found = {"steps": rows, "published": {"top1": 80.05}, "n": 50000, "alpha": 0.05, "fix_first": audit.fix_first(rows),
             "end_to_end": {"from": "published", "to": "device", "delta_top1": -1.47}}
    rows[-1]["top1"] = 78.58
    assert audit.summary(found) == (
        "published 80.050 -> device 78.580 (-1.470 on 50000 images): precision -0.600 (p=0.04), recipe -0.310 "
        "(p=0.01), source -0.500 (n.s.), export +0.000, device -0.060 (n.s.); fix first: precision")
