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
import psutil
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


def start(args: list[str], cwd: Path, log: Path | None = None) -> subprocess.Popen:
    """``python -m evalkit ARGS`` in its own session; output to ``log`` where a leftover child could hold a pipe."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.PIPE if log is None else open(log, "w")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen([sys.executable, "-m", "evalkit", *args], cwd=cwd, env=env,
                            stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_checkpoint(results: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(results.glob(".partial/*/part-*.npz")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def run_args(onnx, sample_root, results, *extra, workers=1, batch_size="4"):
    return [f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={sample_root}", f"results.dir={results}",
            "progress=false", f"runtime.batch_size={batch_size}", "runtime.intra_op_threads=1", f"workers={workers}",
            "results.checkpoint_s=0", "cache.enabled=false", *extra]


def alive_in_session(session: int) -> list[psutil.Process]:
    """Processes of a session that still live (an exited process waiting for init to reap it has ended)."""
    found = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == session and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (OSError, psutil.Error):
            pass  # gone meanwhile
    return found


def assert_session_ends(session: int, within_s: float = 5.0) -> None:
    time.sleep(within_s)
    left = alive_in_session(session)
    for p in left:  # never leave them behind, even when the test fails
        p.kill()
    assert not left, [(p.pid, p.cmdline()) for p in left]


def resume_and_compare(args: list[str], results: Path, tmp_path: Path, ort_run) -> dict:
    """Resume an interrupted run; it must equal the uninterrupted one image by image."""
    resumed = run_cli(*args, "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    done = int(resumed.stdout.split("resuming: ")[1].split(" of ")[0])
    assert 0 < done < 200
    (run_dir,) = [p.parent for p in results.glob("*/run.json")]
    run = json.loads((run_dir / "run.json").read_text())
    ort, ort_predictions, _ = ort_run
    assert run["metrics"] == ort["metrics"]
    predictions = pd.read_csv(run_dir / "predictions.csv")  # without prob1..prob5: this run kept no logits
    assert predictions.equals(ort_predictions[list(predictions.columns)])
    assert run["dataset"]["content_fingerprint"] == ort["dataset"]["content_fingerprint"]
    assert not list(results.glob(".partial/*"))
    return run


@pytest.mark.parametrize("sig,code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143)])
def test_a_killed_run_leaves_no_process_and_resumes_identically(sig, code, ort_run, lite0_onnx, sample_root, tmp_path):
    """A scheduler sends SIGTERM, then SIGKILL, to the run alone: its decode workers and fork server go too."""
    results = tmp_path / "results"
    args = run_args(lite0_onnx, sample_root, results, workers=3)
    proc = start(args, tmp_path, log=tmp_path / "log")
    wait_for_checkpoint(results, proc)
    assert len(alive_in_session(proc.pid)) >= 4  # the run, the fork server, three workers
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=60) == code, (tmp_path / "log").read_text()
    assert_session_ends(proc.pid)
    assert not list(results.glob("*/run.json"))
    resume_and_compare(args, results, tmp_path, ort_run)


def test_a_sweep_killed_leaves_no_joblib_worker_behind(lite0_onnx, sample_root, tmp_path):
    results = tmp_path / "results"
    proc = start(["-m", "hydra/launcher=local", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                  *run_args(lite0_onnx, sample_root, results, batch_size="2,4")], tmp_path, log=tmp_path / "log")
    wait_for_checkpoint(results, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert_session_ends(proc.pid)


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
                                             ("model=nope", "mmcls/cspresnext50")])
def test_unknown_names_list_the_valid_ones(tmp_path, override, listed):
    out = run_cli(override, cwd=tmp_path)
    assert out.returncode == 2 and "; choices: " in out.stderr and listed in out.stderr and "_schema" not in out.stderr


def test_label_file_paths_may_not_leave_the_root(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "secret.JPEG").write_bytes(b"x")
    (tmp_path / "val.txt").write_text("../secret.JPEG 1\n")
    with pytest.raises(UserError, match="outside the dataset root"):
        evaluate(compose(["dataset=labelfile", f"dataset.root={tmp_path / 'val'}", f"dataset.labels={tmp_path / 'val.txt'}"]))


def test_a_resumed_run_keeps_the_bad_images_found_before_the_kill(lite0_onnx, sample_root, tmp_path):
    """count_wrong: the bad-image list and its reasons survive a kill, as predictions and metrics do."""
    root = tmp_path / "val"
    photos = sorted(sample_root.glob("*/*.JPEG"))
    for photo in photos:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        (root / photo.parent.name / photo.name).symlink_to(photo)
    early, late = photos[1], photos[-2]  # one bad image before the kill, one after it
    for photo in (early, late):
        target = root / photo.parent.name / photo.name
        target.unlink()
        target.write_bytes(b"not a jpeg")
    args = [*run_args(lite0_onnx, root, tmp_path / "killed"), "dataset.bad_images=count_wrong"]
    proc = start(args, tmp_path, log=tmp_path / "log")
    wait_for_checkpoint(tmp_path / "killed", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = run_cli(*args, "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 0 of" not in resumed.stdout
    straight = run_cli(*run_args(lite0_onnx, root, tmp_path / "straight"), "dataset.bad_images=count_wrong",
                       cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    (a,), (b,) = [list((tmp_path / d).glob("*/run.json")) for d in ("killed", "straight")]
    resumed_run, straight_run = json.loads(a.read_text()), json.loads(b.read_text())
    assert resumed_run["bad_images"] == straight_run["bad_images"]
    assert set(straight_run["bad_images"]["examples"]) == {early.stem, late.stem}
    assert resumed_run["metrics"] == straight_run["metrics"]
    assert pd.read_csv(a.parent / "predictions.csv").equals(pd.read_csv(b.parent / "predictions.csv"))


def test_a_gpu_decoded_recipe_records_that_it_is_not_the_recipes_own_pixels():
    from evalkit import preprocess
    from evalkit.config import compose
    from evalkit.run import recipe_record

    recipe = preprocess.build(compose().preprocess)
    cpu, gpu = recipe_record(recipe, "cpu"), recipe_record(recipe, "gpu")
    assert cpu["fingerprint"] == recipe.fingerprint and "bit_exact" not in cpu
    assert gpu["bit_exact"] is False and "nvJPEG" in gpu["decode"]
    assert gpu["fingerprint"] != cpu["fingerprint"] and {"torch", "torchvision"} <= set(gpu["libraries"])
