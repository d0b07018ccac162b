"""Sweeps and shard runs through Hydra's submitit launcher on a private single-node SLURM cluster (conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

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


def test_sweep_through_slurm_cpu_then_gate(slurm_cluster, sample_root, lite0_onnx, tmp_path):
    results = tmp_path / "results"
    start = time.monotonic()
    proc = evalkit(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm_cpu", *SMALL,
                   *photos(sample_root, lite0_onnx, results, 8), "runtime.batch_size=4,8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seconds = time.monotonic() - start
    runs = run_dirs(results)
    assert len(runs) == 2, f"{runs} ({seconds:.0f} s)"
    records = [json.loads((d / "run.json").read_text()) for d in runs]
    assert sorted(r["runtime"]["batch_size"] for r in records) == [4, 8]
    assert all(r["metrics"]["n"] == 8 for r in records)
    # each point ran as a SLURM job: submitit's folder holds its logs
    assert list(results.glob(".sweeps/*/.submitit/*/*_log.out")), "no submitit job logs: not run through SLURM?"
    a, b = (pd.read_csv(d / "predictions.csv").set_index("id") for d in runs)
    assert (a["pred1"] == b["pred1"].reindex(a.index)).all(), "the batch size changed a top-1 prediction"

    gate = evalkit(slurm_cluster, tmp_path, "--last-sweep", "--results", str(results),
                   "--junit", str(tmp_path / "gate.xml"), module="evalkit.gate", timeout=120)
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]
    assert "2 of 2 runs pass" in gate.stdout
    assert (tmp_path / "gate.xml").is_file()


def test_four_shards_through_slurm_merge_to_the_unsharded_run(slurm_cluster, sample_root, lite0_onnx, tmp_path):
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    proc = evalkit(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm_cpu", *SMALL,
                   *photos(sample_root, lite0_onnx, sharded, 12), "dataset.num_shards=4", "dataset.shard=range(4)")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shards = run_dirs(sharded)
    assert len(shards) == 4, shards
    assert sorted(json.loads((d / "run.json").read_text())["metrics"]["n"] for d in shards) == [3, 3, 3, 3]

    merged_results = tmp_path / "merged"
    merge = evalkit(slurm_cluster, tmp_path, *map(str, shards), "--results", str(merged_results),
                    module="evalkit.merge", timeout=120)
    assert merge.returncode == 0, merge.stdout[-3000:] + merge.stderr[-3000:]
    [merged] = run_dirs(merged_results)

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
