"""Sweeps, shard runs, failed and cancelled points and resume=true through evalkit's SLURM launcher, on a private
single-node SLURM cluster (conftest.py)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ..conftest import tiny_onnx  # noqa: TID252

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
# the node has the machine's cores; one core and 1 GB per job lets the sweep's jobs run side by side
SMALL = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
TIMEOUT = 300


def evalkit(cluster, cwd: Path, *args: str, module: str = "evalkit", timeout: int = TIMEOUT):
    """``python -m MODULE ARGS`` with the cluster's SLURM_CONF exported, as a user runs it on a login node."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=cluster.env(PYTHONPATH=str(REPO)))


def photos(sample_root: Path, onnx: Path, results: Path, limit: int) -> list[str]:
    return [f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={sample_root}", f"dataset.limit={limit}",
            f"results.dir={results}", "progress=false"]


def run_dirs(results: Path) -> list[Path]:
    return sorted(p.parent for p in results.glob("*/run.json"))


def test_nightly_experiment_through_slurm_cpu_then_gate(slurm_cluster, sample_root, lite0_onnx, tmp_path):
    """The nightly matrix (conf/experiment/nightly.yaml) on the model with real weights, fp32 and fp16."""
    results = tmp_path / "results"
    start = time.monotonic()
    proc = evalkit(slurm_cluster, tmp_path, "experiment=nightly", "hydra/launcher=slurm_cpu", *SMALL,
                   *photos(sample_root, lite0_onnx, results, 8), "hydra.sweeper.params.model=tf_efficientnet_lite0",
                   "hydra.sweeper.params.precision='fp32,fp16'")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seconds = time.monotonic() - start
    runs = run_dirs(results)
    assert len(runs) == 2, f"{runs} ({seconds:.0f} s)"
    records = {json.loads((d / "run.json").read_text())["config"]["precision"]["name"]: d for d in runs}
    assert sorted(records) == ["fp16", "fp32"]
    assert all(json.loads((d / "run.json").read_text())["metrics"]["n"] == 8 for d in runs)
    # each point ran as a SLURM job: submitit's folder holds its logs
    assert list(results.glob(".sweeps/*/.submitit/*/*_log.out")), "no submitit job logs: not run through SLURM?"
    fp32, fp16 = (pd.read_csv(records[p] / "predictions.csv").set_index("id") for p in ("fp32", "fp16"))
    assert (fp32["pred1"] != fp16["pred1"].reindex(fp32.index)).sum() <= 1

    gate = evalkit(slurm_cluster, tmp_path, "--last-sweep", "--results", str(results), "--allow-unverified",
                   "--junit", str(tmp_path / "gate.xml"), module="evalkit.gate", timeout=120)
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]
    assert "0 fail" in gate.stdout and "(of 2 runs)" in gate.stdout
    assert (tmp_path / "gate.xml").is_file()


def test_four_shards_through_slurm_merge_to_the_unsharded_run(slurm_cluster, sample_root, lite0_onnx, tmp_path):
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    proc = evalkit(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm_cpu", *SMALL,
                   *photos(sample_root, lite0_onnx, sharded, 12), "dataset.num_shards=4", "dataset.shard=range(4)")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shards = run_dirs(sharded)
    assert len(shards) == 4, shards
    assert sorted(json.loads((d / "run.json").read_text())["metrics"]["n"] for d in shards) == [3, 3, 3, 3]

    merge = evalkit(slurm_cluster, tmp_path, "--last-sweep", "--results", str(sharded), module="evalkit.merge",
                    timeout=120)
    assert merge.returncode == 0, merge.stdout[-3000:] + merge.stderr[-3000:]
    [merged] = [d for d in run_dirs(sharded) if d not in shards]
    assert sorted(json.loads((merged / "run.json").read_text())["merged_from"]) == sorted(d.name for d in shards)

    # the unsharded run, in this process's machine (not through SLURM): the reference
    one = evalkit(slurm_cluster, tmp_path, *photos(sample_root, lite0_onnx, whole, 12))
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    [unsharded] = run_dirs(whole)

    cols = ["id", "label"] + [f"pred{k}" for k in range(1, 6)]
    got = pd.read_csv(merged / "predictions.csv")[cols].sort_values("id").reset_index(drop=True)
    want = pd.read_csv(unsharded / "predictions.csv")[cols].sort_values("id").reset_index(drop=True)
    assert len(want) == 12
    pd.testing.assert_frame_equal(got, want)
    m_got, m_want = (json.loads((d / "run.json").read_text())["metrics"] for d in (merged, unsharded))
    assert (m_got["n"], m_got["top1"], m_got["top5"]) == (m_want["n"], m_want["top1"], m_want["top5"])


def queue(cluster) -> dict[str, str]:
    """SLURM job id -> state, of the jobs in the cluster's queue."""
    lines = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True, timeout=30,
                           env=cluster.env(), check=True).stdout.splitlines()
    return dict(line.split() for line in lines)


def running_task(cluster, task: int, proc: subprocess.Popen, timeout: float = 120) -> str:
    """The SLURM id (``<array job>_<task>``) of the sweep's array task ``task`` once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = [job for job, state in queue(cluster).items() if job.endswith(f"_{task}") and state == "RUNNING"]
        if found:
            return found[0]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"array task {task} never ran: {proc.communicate()}")


def precision_sweep(sample_root, onnx, calibration_root, results: Path, *precisions: str) -> list[str]:
    """Points of the nightly's kind; int8 calibrates first and scores the slowest: the point still running when the
    test cancels it (one core each, as SLURM gives; 2 GB for the calibration)."""
    return ["-m", "hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=10", *photos(sample_root, onnx, results, 200), "runtime.intra_op_threads=1",
            "workers=1", f"precision.calibration.root={calibration_root}", f"precision={','.join(precisions)}"]


def start(cluster, cwd: Path, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evalkit", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cluster.env(PYTHONPATH=str(REPO)))


def test_a_cancelled_point_fails_sweep_and_gate_then_resume_runs_only_it(slurm_cluster, sample_root, lite0_onnx,
                                                                          calibration_root, tmp_path):
    results = tmp_path / "results"
    args = precision_sweep(sample_root, lite0_onnx, calibration_root, results, "fp32", "fp16", "int8")
    proc = start(slurm_cluster, tmp_path, args)
    job = running_task(slurm_cluster, 2, proc)
    subprocess.run(["scancel", job], check=True, timeout=30, env=slurm_cluster.env())
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 2, out[-3000:] + err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("evalkit: ")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert f"1 of 3 sweep points did not complete: point 2 (precision=int8): SLURM job {job} ended CANCELLED" \
        in errors[0] and "resume=true" in errors[0], errors[0]
    # the other points completed and are kept
    before = {d: (d / "run.json").read_bytes() for d in run_dirs(results)}
    assert sorted(json.loads(r)["config"]["precision"]["name"] for r in before.values()) == ["fp16", "fp32"]

    gate = evalkit(slurm_cluster, tmp_path, "--last-sweep", "--results", str(results), module="evalkit.gate",
                   timeout=120)
    assert gate.returncode == 1, gate.stdout[-3000:] + gate.stderr[-3000:]
    assert "0 fail" in gate.stdout and "(of 2 runs); 1 sweep point(s) without a run" in gate.stdout
    assert f"gate: no run of point 2 (precision=int8; SLURM job {job})" in gate.stdout, gate.stdout

    resumed = evalkit(slurm_cluster, tmp_path, *args, "resume=true")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    for n, name in ((0, "fp32"), (1, "fp16")):
        assert f"point {n} (precision={name}): already ran" in resumed.stdout, resumed.stdout[-3000:]
    after = run_dirs(results)
    [new] = [d for d in after if d not in before]
    assert len(after) == 3 and all((d / "run.json").read_bytes() == data for d, data in before.items())
    records = [json.loads((d / "run.json").read_text()) for d in after]
    assert json.loads((new / "run.json").read_text())["config"]["precision"]["name"] == "int8"
    assert len({r["sweep"] for r in records}) == 1, "the resumed point ran into another sweep"

    gate = evalkit(slurm_cluster, tmp_path, "--last-sweep", "--results", str(results), "--allow-unverified",
                   module="evalkit.gate", timeout=120)
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]
    assert "0 fail" in gate.stdout and "(of 3 runs)" in gate.stdout and "no run" not in gate.stdout


def test_a_point_that_fails_in_its_job_is_named_and_the_others_complete(slurm_cluster, sample_root, lite0_onnx,
                                                                         tmp_path):
    """A point the preflight cannot refuse (a model of 10 classes: found out when it runs) fails in its job."""
    results = tmp_path / "results"
    ten = tiny_onnx(tmp_path / "ten.onnx", classes=10)
    args = [a for a in photos(sample_root, lite0_onnx, results, 4) if not a.startswith("model.onnx=")]
    proc = evalkit(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm_cpu", *SMALL, *args,
                   f"model.onnx={ten},{lite0_onnx}")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("evalkit: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.search(r"1 of 2 sweep points did not complete: point 0 \(model.onnx=\S+ten.onnx\): SLURM job \d+_0 "
                     r"failed: the model has 10 outputs", errors[0]), errors[0]
    [run] = run_dirs(results)
    assert json.loads((run / "run.json").read_text())["config"]["model"]["onnx"] == str(lite0_onnx)


def test_a_sweep_stopped_with_sigterm_cancels_its_jobs(slurm_cluster, sample_root, lite0_onnx, calibration_root,
                                                       tmp_path):
    proc = start(slurm_cluster, tmp_path, precision_sweep(sample_root, lite0_onnx, calibration_root,
                                                          tmp_path / "results", "fp32", "int8"))
    array = running_task(slurm_cluster, 1, proc).split("_")[0]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:] + err[-3000:]
    assert "resume=true" in err
    deadline = time.monotonic() + 30
    while any(job.startswith(f"{array}_") for job in queue(slurm_cluster)):
        assert time.monotonic() < deadline, f"the jobs of SLURM array {array} still queued after their sweep stopped"
        time.sleep(0.5)


def gpu_request(cluster, sample_root, onnx, tmp_path):
    return evalkit(cluster, tmp_path, "-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug",
                   "hydra.launcher.gpus_per_node=1", *SMALL, *photos(sample_root, onnx, tmp_path / "results", 4),
                   timeout=120)


def test_gpu_request_on_a_cpu_only_cluster_is_one_message_and_exit_2(slurm_cluster, sample_root, lite0_onnx,
                                                                      tmp_path):
    start = time.monotonic()
    proc = gpu_request(slurm_cluster, sample_root, lite0_onnx, tmp_path)
    assert time.monotonic() - start < 60, "a GPU request SLURM cannot satisfy must fail at once, not pend"
    assert not run_dirs(tmp_path / "results")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("evalkit: ")]
    assert len(errors) == 1 and "gres" in errors[0] and "slurm_cpu" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
