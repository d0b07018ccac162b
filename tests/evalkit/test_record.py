"""Run directories are written whole or not at all; run.json is read and written as one RunRecord."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from evalkit import record
from evalkit.errors import UserError
from evalkit.gate import GateConfig, gate
from evalkit.record import RunRecord
from evalkit.scoring import Scorer


def result():
    s = Scorer(["topk"])
    s.update(["a", "b"], np.array([1, 2]), np.eye(1000, dtype=np.float32)[[1, 3]])
    return s.result()


def test_run_directory_has_every_file(tmp_path):
    run_dir = record.write(tmp_path, "r1", RunRecord(metrics={"top1": 50.0}), result(),
                           logits=np.zeros((2, 1000)))
    assert sorted(p.name for p in run_dir.iterdir()) == ["logits.npy", "per_class.csv", "predictions.csv", "run.json"]
    assert record.load(run_dir).metrics["top1"] == 50.0
    assert json.loads((run_dir / "run.json").read_text())["schema_version"] == record.SCHEMA_VERSION


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(record.json, "dump", broken)
    with pytest.raises(OSError, match="disk full"):
        record.write(tmp_path, "r1", RunRecord(), result())
    assert list(tmp_path.iterdir()) == []


def test_run_ids_are_unique_and_name_model_runtime_and_precision():
    a, b = (record.new_run_id("mmcls/cspresnext50", "ort", "int8") for _ in range(2))
    assert a != b and "mmcls_cspresnext50-ort-int8-" in a
    assert "/" not in record.new_run_id("m", "ort", "../x")


def test_per_class_names_each_class(tmp_path):
    per_class = pd.read_csv(record.write(tmp_path, "r1", RunRecord(), result()) / "per_class.csv")
    assert list(per_class.columns) == ["label", "wnid", "class_name", "n", "top1", "top5"]
    assert per_class["wnid"].tolist() == ["n01443537", "n01484850"]
    assert per_class["class_name"].tolist() == ["goldfish", "great_white_shark"] and per_class["n"].tolist() == [1, 1]


def test_versions_name_python_and_the_core_libraries():
    v = record.versions()
    assert {"python", "numpy", "pillow", "evalkit"} <= v.keys()


#: run.json as the previous main wrote it: no schema_version, reference rows without "applies" and "ref_n",
#: a runtime without a precision setting
VERSION_1 = {
    "id": "20260101T000000Z-m-ort-abcdef", "created": "2026-01-01T00:00:00+00:00", "evalkit": "0.1.0",
    "metrics": {"n": 50000, "top1": 74.9, "top2": 80.0, "top3": 85.0, "top4": 88.0, "top5": 92.2,
                "top1_ci95": [74.5, 75.3], "background_class": False, "no_prediction": 0},
    "model": {"name": "m", "source": "timm"},
    "runtime": {"name": "ort", "batch_size": 32, "info": {}},
    "recipe": {"family": "timm", "params": {"size": 224}, "fingerprint": "f00d", "libraries": {}},
    "dataset": {"name": "imagenet", "layout": "imagefolder", "root": "/data", "n": 50000,
                "list_fingerprint": "beef", "content_fingerprint": None},
    "reference": {"comparable": True, "rows": [
        {"source": "timm", "setting": "", "top1": 74.9, "top5": 92.2, "ref_top1": 74.83, "ref_top5": 92.2,
         "delta_top1": 0.07, "delta_top5": 0.0, "status": "ok"},
        {"source": "paper", "setting": "", "top1": 74.9, "top5": 92.2, "ref_top1": 80.0, "ref_top5": 95.0,
         "delta_top1": -5.1, "delta_top5": -2.8, "status": "other setting: size=224 (measured at 260)"}]},
    "timing": {"seconds": 10.0, "images_per_s": 5000.0}, "dump": None,
    "bad_images": {"count": 0, "examples": {}}, "sweep": None, "warnings": [],
    "versions": {"python": "3.11"}, "config": {"model": {"name": "m"}},
}


def write_version_1(run_dir, run=VERSION_1):
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    pd.DataFrame({"id": ["a"], "label": [1], **{f"pred{k}": [k] for k in range(1, 6)}}).to_csv(
        run_dir / "predictions.csv", index=False)
    return run_dir


def test_a_version_1_run_json_loads_with_the_defaults_of_its_time(tmp_path):
    run = record.load(write_version_1(tmp_path / "old"))
    assert run.schema_version == record.SCHEMA_VERSION and run.id == VERSION_1["id"]
    assert run.precision == "fp32" and run.executed_precision is None
    ok, other = run.reference_rows
    assert (ok["applies"], ok["ref_n"]) == (True, 50_000) and (other["applies"], other["ref_n"]) == (False, 50_000)
    assert [r["source"] for r in run.applicable_references] == ["timm"]
    assert run.shard is None and run.merged_from is None
    # a version-2 row says whether it applies, whatever its status (a verdict) reads
    judged = {"status": "not comparable (n=4, ...)", "applies": True, "ref_n": 50_000}
    assert RunRecord.from_dict({"reference": {"rows": [judged]}}).applicable_references == [judged]


def test_a_version_1_run_still_gates(tmp_path):
    run_dir = write_version_1(tmp_path / "results" / "old")
    ((run, checks),) = gate([run_dir], tmp_path / "results" / "history.sqlite", GateConfig())
    result = {c.name: c for c in checks}
    assert result["reference timm"].passed is True and "74.830 on 50000" in result["reference timm"].detail
    assert "reference paper" not in result  # measured at another setting: not judged
    below = {**VERSION_1, "id": "below", "metrics": {**VERSION_1["metrics"], "top1": 74.0}}
    ((_, checks),) = gate([write_version_1(tmp_path / "results" / "below", below)],
                          tmp_path / "results" / "history.sqlite", GateConfig())
    assert {c.name: c.passed for c in checks}["reference timm"] is False


def test_the_file_keeps_its_keys_and_unknown_keys_round_trip(tmp_path):
    data = {**VERSION_1, "from_a_newer_tool": {"x": 1}}
    run = RunRecord.from_dict(data)
    assert run.extra == {"from_a_newer_tool": {"x": 1}}
    written = json.loads((record.write(tmp_path, "r", run, result()) / "run.json").read_text())
    assert set(written) == set(data) | {"schema_version"}
    assert written["runtime"] == VERSION_1["runtime"]  # no precision invented in the file


def test_a_newer_schema_and_a_missing_run_json_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="newer"):
        RunRecord.from_dict({**VERSION_1, "schema_version": record.SCHEMA_VERSION + 1})
    with pytest.raises(UserError, match="not a run directory"):
        record.load(tmp_path)
