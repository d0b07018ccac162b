"""Run directories are written whole or not at all."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit import record
from evalkit.scoring import Scorer


def result():
    s = Scorer()
    s.update(["a", "b"], np.array([1, 2]), np.eye(1000, dtype=np.float32)[[1, 3]])
    return s.result()


def test_run_directory_has_every_file(tmp_path):
    run_dir = record.write(tmp_path, "r1", {"metrics": {"top1": 50.0}}, result(), logits=np.zeros((2, 1000)))
    assert sorted(p.name for p in run_dir.iterdir()) == ["logits.npy", "per_class.csv", "predictions.csv", "run.json"]
    assert record.load(run_dir)["metrics"]["top1"] == 50.0


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(record.json, "dump", broken)
    with pytest.raises(OSError, match="disk full"):
        record.write(tmp_path, "r1", {}, result())
    assert list(tmp_path.iterdir()) == []


def test_run_ids_are_unique_and_name_model_and_runtime():
    a, b = record.new_run_id("mmcls/cspresnext50", "ort"), record.new_run_id("mmcls/cspresnext50", "ort")
    assert a != b and "mmcls_cspresnext50-ort" in a


def test_versions_name_python_and_the_core_libraries():
    v = record.versions()
    assert {"python", "numpy", "pillow", "evalkit"} <= v.keys()
