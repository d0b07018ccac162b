"""The tensor cache proves its rows: a damaged cache is repaired and said so, never scored; a short write never counts.

Every test starts from one intact cache of 12 shared photos (made once by a cold run of the demo model) and
runs the same command again on a copy of it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import preprocess
from evalkit.config import compose
from evalkit.dataset import load
from evalkit.run import evaluate
from evalkit.tensorcache import TensorCache, write_row

from ..conftest import REPO  # noqa: TID252

N = 12


def args(onnx: Path, root: Path, cache: Path, results: Path) -> list[str]:
    """The one command every test runs: 12 shared photos, the demo model, a tensor cache in ``cache``."""
    return [f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={root}", f"dataset.limit={N}",
            f"cache.dir={cache}", f"results.dir={results}", "progress=false", "workers=1", "runtime.batch_size=4"]


def run(onnx: Path, root: Path, cache: Path, results: Path) -> tuple[dict, pd.DataFrame]:
    run_dir = evaluate(compose(args(onnx, root, cache, results)))
    return json.loads((run_dir / "run.json").read_text()), pd.read_csv(run_dir / "predictions.csv")


def open_cache(root: Path, cache: Path) -> tuple[list, TensorCache]:
    cfg = compose(["dataset=imagefolder", f"dataset.root={root}", f"dataset.limit={N}"])
    samples = load(cfg.dataset)
    return samples, TensorCache(cache, preprocess.build(cfg.preprocess), samples)


def unverified(cache: TensorCache) -> list[int]:
    """Rows that are marked done but fail verification (there must never be any)."""
    fd = os.open(cache.data, os.O_RDONLY)
    try:
        return [i for i in np.flatnonzero(cache.done) if cache.read(fd, int(i)) is None]
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def intact(sample_root, lite0_onnx, tmp_path_factory) -> tuple[Path, pd.DataFrame, dict]:
    """(the folder of a whole cache of the 12 photos, the predictions and run.json of the cold run that made it)."""
    tmp = tmp_path_factory.mktemp("intact")
    record, predictions = run(lite0_onnx, sample_root, tmp / "tensors", tmp / "results")
    return tmp / "tensors", predictions, record


@pytest.fixture
def cache(intact, tmp_path) -> Path:
    """A copy of the intact cache for one test to damage."""
    return Path(shutil.copytree(intact[0], tmp_path / "tensors"))


def cut_off(cache: TensorCache) -> int:
    """Truncate the data file in the middle of row 5: rows 5 to 11 are lost."""
    os.truncate(cache.data, 5 * cache.row_bytes + 1000)
    return N - 5


def flip_a_bit(cache: TensorCache) -> int:
    """One bit of row 3 flipped, the file keeps its size."""
    with open(cache.data, "r+b") as f:
        f.seek(3 * cache.row_bytes + 12345)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x10]))
    return 1


def zero_a_row(cache: TensorCache) -> int:
    """Row 7 overwritten with zeros, as a sparse hole reads."""
    with open(cache.data, "r+b") as f:
        f.seek(7 * cache.row_bytes)
        f.write(bytes(cache.row_bytes))
    return 1


@pytest.mark.parametrize("damage", [cut_off, flip_a_bit, zero_a_row])
def test_a_damaged_cache_is_repaired_and_said_so_never_scored(damage, intact, cache, sample_root, lite0_onnx, tmp_path,
                                                             capsys):
    samples, before = open_cache(sample_root, cache)
    repaired = damage(before)
    capsys.readouterr()

    record, predictions = run(lite0_onnx, sample_root, cache, tmp_path / "results")

    assert predictions.equals(intact[1])
    assert record["dataset"]["content_fingerprint"] == intact[2]["dataset"]["content_fingerprint"]
    said = f"tensor cache repaired: {repaired} damaged row(s)"
    assert f"WARNING: {said}" in capsys.readouterr().err
    assert [w for w in record["warnings"] if said in w]
    _, after = open_cache(sample_root, cache)  # and the cache is whole again
    assert after.missing(samples) == [] and unverified(after) == [] and after.repaired == 0


def test_an_intact_warm_run_reports_no_repairs(intact, cache, sample_root, lite0_onnx, tmp_path, capsys):
    record, predictions = run(lite0_onnx, sample_root, cache, tmp_path / "results")
    assert predictions.equals(intact[1])
    assert "tensor cache" not in capsys.readouterr().err
    assert not [w for w in record["warnings"] if "tensor cache" in w]


def test_a_cache_without_checksums_is_made_again_not_trusted(intact, cache, sample_root):
    """A state file written before rows had checksums: its rows are unverified, so none of them counts."""
    samples, old = open_cache(sample_root, cache)
    np.savez(old.state_path, done=old.done, stat=old.stat, digest=old.digest)
    assert open_cache(sample_root, cache)[1].missing(samples) == list(range(N))


def test_a_short_write_continues_where_it_stopped(tmp_path, monkeypatch):
    """``pwrite`` may write less than it was given (a signal, a nearly full disk): the rest is written after it."""
    pwrite, calls = os.pwrite, []

    def at_most_1000_bytes(fd: int, data: bytes, offset: int) -> int:
        calls.append(offset)
        return pwrite(fd, bytes(data[:1000]), offset)

    row = np.random.default_rng(0).integers(0, 256, 2500, np.uint8).tobytes()
    fd = os.open(tmp_path / "rows.u8", os.O_WRONLY | os.O_CREAT)
    monkeypatch.setattr(os, "pwrite", at_most_1000_bytes)
    try:
        write_row(fd, row, 100)
    finally:
        os.close(fd)
    assert calls == [100, 1100, 2100]
    assert (tmp_path / "rows.u8").read_bytes() == bytes(100) + row


def test_a_full_disk_during_a_cache_write_fails_cleanly_and_the_rerun_is_whole(intact, sample_root, lite0_onnx,
                                                                               tmp_path):
    """The kernel's own short write: a file size limit (RLIMIT_FSIZE) in the middle of row 5, set for the run and
    every decode worker it starts. The worker writes the part of row 5 that fits, then the next write fails; the
    run stops with one message (exit 2), no row it did not write whole is marked done, and the same command
    afterwards scores exactly what an intact cache scores."""
    cache = tmp_path / "tensors"
    samples, fresh = open_cache(sample_root, cache)
    limit = 5 * fresh.row_bytes + 1000

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    full = subprocess.run([sys.executable, "-m", "evalkit", *args(lite0_onnx, sample_root, cache, tmp_path / "r")],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                          timeout=600, preexec_fn=small_disk)

    assert full.returncode == 2, full.stderr
    assert "cannot write the tensor cache" in full.stderr and "File too large" in full.stderr
    assert "Traceback" not in full.stderr
    assert fresh.data.stat().st_size == limit  # row 5 was written in part
    _, left = open_cache(sample_root, cache)
    assert not left.done[5:].any() and unverified(left) == []

    _, predictions = run(lite0_onnx, sample_root, cache, tmp_path / "results")
    assert predictions.equals(intact[1])
