"""Reliability of a run: bad images, kill and resume, Ctrl-C, concurrent writers, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from evalkit.config import compose
from evalkit.errors import UserError
from evalkit.run import evaluate

from ..conftest import REPO, run_cli, tiny_onnx  # noqa: TID252
from .test_cli import imagefolder


def test_bad_images_fail_by_default_or_count_wrong_and_are_listed(tmp_path):
    root, onnx = imagefolder(tmp_path, n=4), tiny_onnx(tmp_path / "m.onnx")
    broken = sorted(root.glob("*/*.JPEG"))[1]
    broken.write_bytes(b"")
    args = [f"model.onnx={onnx}", "model.references=[]", "dataset=imagefolder", f"dataset.root={root}",
            f"results.dir={tmp_path / 'r'}", "progress=false"]
    with pytest.raises(UserError, match=f"{broken.name}: cannot decode image.*dataset.bad_images=count_wrong"):
        evaluate(compose(args))
    run_dir = evaluate(compose([*args, "dataset.bad_images=count_wrong"]))
    run = json.loads((run_dir / "run.json").read_text())
    assert run["bad_images"]["count"] == 1 and broken.stem in run["bad_images"]["examples"]
    assert run["metrics"]["n"] == 4 and run["metrics"]["no_prediction"] == 1
    assert any("count as wrong" in w for w in run["warnings"])


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "evalkit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_checkpoint(results: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(results.glob(".partial/*/part-*.npz")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def run_args(onnx, sample_root, results, *extra):
    return [f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={sample_root}", f"results.dir={results}",
            "progress=false", "runtime.batch_size=4", "runtime.intra_op_threads=1", "workers=1",
            "results.checkpoint_s=0", "cache.enabled=false", *extra]


def test_a_killed_run_resumes_with_only_the_remaining_images(ort_run, lite0_onnx, sample_root, tmp_path):
    results = tmp_path / "results"
    proc = start(run_args(lite0_onnx, sample_root, results), tmp_path)
    wait_for_checkpoint(results, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(results.glob("*/run.json"))
    resumed = run_cli(*run_args(lite0_onnx, sample_root, results, "resume=true"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    done = int(resumed.stdout.split("resuming: ")[1].split(" of ")[0])
    assert 0 < done < 200
    (run_dir,) = [p.parent for p in results.glob("*/run.json")]
    run = json.loads((run_dir / "run.json").read_text())
    ort, ort_predictions, _ = ort_run
    assert run["metrics"] == ort["metrics"]
    ours = pd.read_csv(run_dir / "predictions.csv")
    assert ours.equals(ort_predictions)
    assert run["dataset"]["content_fingerprint"] == ort["dataset"]["content_fingerprint"]
    assert not list(results.glob(".partial/*"))


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(lite0_onnx, sample_root, tmp_path):
    results = tmp_path / "results"
    proc = start(run_args(lite0_onnx, sample_root, results), tmp_path)
    wait_for_checkpoint(results, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "resume=true" in stderr and "Traceback" not in stderr
    assert list(results.glob(".partial/*/part-*.npz")) and not list(results.glob("*/run.json"))


def test_concurrent_runs_into_one_results_directory_lose_nothing(tmp_path):
    root, onnx = imagefolder(tmp_path, n=3), tiny_onnx(tmp_path / "m.onnx")
    procs = [start([f"model.onnx={onnx}", "model.references=[]", "dataset=imagefolder", f"dataset.root={root}",
                    f"results.dir={tmp_path / 'r'}", "progress=false", f"runtime.intra_op_threads={i + 1}"], tmp_path)
             for i in range(3)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.communicate()
    assert len(list((tmp_path / "r").glob("*/run.json"))) == 3
    assert not list((tmp_path / "r").glob(".tmp-*"))
    from evalkit import history

    assert len(history.runs(tmp_path / "r" / "history.sqlite")) == 3


@pytest.mark.parametrize("override,listed", [("runtime=nope", "ort"), ("preprocess=nope", "resnest"),
                                             ("model=nope", "cspresnext50")])
def test_unknown_names_list_the_valid_ones(tmp_path, override, listed):
    out = run_cli(override, cwd=tmp_path)
    assert out.returncode == 2 and "Available options" in out.stderr and listed in out.stderr


def test_label_file_paths_may_not_leave_the_root(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "secret.JPEG").write_bytes(b"x")
    (tmp_path / "val.txt").write_text("../secret.JPEG 1\n")
    with pytest.raises(UserError, match="outside the dataset root"):
        evaluate(compose(["dataset=labelfile", f"dataset.root={tmp_path / 'val'}", f"dataset.labels={tmp_path / 'val.txt'}"]))
