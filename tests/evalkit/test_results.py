"""timm's results tables from runs: timm's header and formatting, one row per model, diffs against a baseline."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from evalkit import results

from ..conftest import REPO  # noqa: TID252

TIMM_HEADER = "model,img_size,top1,top1_err,top5,top5_err,param_count,crop_pct,interpolation"


def write_run(folder, model: str, top1: float, top5: float = 95.0, created: str = "2026-01-01T00:00:00+00:00",
              params_m: float | None = 5.0, shard: list[int] | None = None):
    """A run directory as evalkit writes it, reduced to what the table reads (timm recipe)."""
    run_dir = folder / f"{created[:19].replace(':', '')}-{model}"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({
        "schema_version": 2, "id": run_dir.name, "created": created, "metrics": {"n": 100, "top1": top1, "top5": top5},
        "model": {"name": model, "params_m": params_m},
        "recipe": {"family": "timm", "params": {"family": "timm", "size": 288, "crop_pct": 1.0, "interpolation": "bicubic"}},
        "dataset": {"name": "imagefolder", **({"shard": shard} if shard else {})}}))
    return run_dir


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalkit.results", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_has_timms_header_and_one_row_per_model_from_its_latest_run(tmp_path, capsys):
    write_run(tmp_path, "a", 70.0, created="2026-01-01T00:00:00+00:00")
    write_run(tmp_path, "a", 80.0, created="2026-01-02T00:00:00+00:00")
    write_run(tmp_path, "b", 75.0)
    write_run(tmp_path, "b", 10.0, created="2026-01-03T00:00:00+00:00", shard=[0, 2])  # a shard: not the model's run
    results.main(["--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == TIMM_HEADER
    assert out.splitlines()[1:] == ["a,288,80.000,20.000,95.000,5.000,5.00,1.000,bicubic",
                                    "b,288,75.000,25.000,95.000,5.000,5.00,1.000,bicubic"]


def test_a_param_count_over_1000_has_a_thousands_separator_and_is_quoted(tmp_path, capsys):
    write_run(tmp_path, "eva_giant", 89.0, params_m=1013.0149)
    write_run(tmp_path, "unknown_size", 70.0, params_m=None)
    results.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert 'eva_giant,288,89.000,11.000,95.000,5.000,"1,013.01",1.000,bicubic' in out.splitlines()
    assert [r["param_count"] for r in rows(out)] == ["1,013.01", ""]


def test_a_baseline_adds_timms_signed_diffs_and_rank_diff(tmp_path, capsys):
    for model, top1 in [("x", 80.0), ("y", 79.5), ("z", 78.0), ("v", 60.0)]:
        write_run(tmp_path / "val", model, top1)
    for model, top1, top5 in [("y", 79.171, 95.0), ("z", 79.088, 95.5), ("x", 78.5, 95.0), ("v", 60.0, 95.0),
                              ("w", 50.0, 95.0)]:
        write_run(tmp_path / "real", model, top1, top5)
    results.main([str(tmp_path / "real"), "--baseline", str(tmp_path / "val")])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == TIMM_HEADER + ",top1_diff,top5_diff,rank_diff"
    assert {r["model"]: (r["top1_diff"], r["top5_diff"], r["rank_diff"]) for r in rows(out)} == {
        "y": ("-0.329", "+0.000", "+1"), "z": ("+1.088", "+0.500", "+1"), "x": ("-1.500", "+0.000", "-2"),
        "v": ("+0.000", "+0.000", "0"), "w": ("", "", "")}
    assert [r["model"] for r in rows(out)] == ["y", "z", "x", "v", "w"]


def test_markdown_is_a_table_of_the_same_columns(tmp_path, capsys):
    write_run(tmp_path, "a", 80.0, params_m=1013.01)
    write_run(tmp_path, "b", 75.0)
    results.main([str(tmp_path), "--format", "markdown"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| " + TIMM_HEADER.replace(",", " | ") + " |"
    assert lines[1] == "|" + "---|" * 9
    assert lines[2] == "| a | 288 | 80.000 | 20.000 | 95.000 | 5.000 | 1,013.01 | 1.000 | bicubic |"
    assert len(lines) == 4 and all(line.count("|") == 10 for line in lines)


def test_a_real_run_gives_its_row(ort_run, tmp_path, capsys):
    run = ort_run[0]
    (tmp_path / run["id"]).mkdir()
    (tmp_path / run["id"] / "run.json").write_text(json.dumps(run))
    results.main([str(tmp_path / run["id"])])
    (row,) = rows(capsys.readouterr().out)
    m = run["metrics"]
    assert row == {"model": "tf_efficientnet_lite0", "img_size": "224", "top1": f"{m['top1']:.3f}",
                   "top1_err": f"{100 - m['top1']:.3f}", "top5": f"{m['top5']:.3f}", "top5_err": f"{100 - m['top5']:.3f}",
                   "param_count": "4.65", "crop_pct": "0.875", "interpolation": "bicubic"}


@pytest.mark.parametrize("case", ["empty folder", "not a run"])
def test_bad_input_is_one_message_and_exit_code_2(tmp_path, case):
    target = tmp_path / "empty"
    target.mkdir()
    if case == "not a run":
        (target / "notes.txt").write_text("hello")
        target = target / "notes.txt"
    out = cli(target)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == f"evalkit: error: {target}: not a run directory (no run.json) nor a folder of runs"


def test_help_says_which_run_of_a_model_is_used():
    out = cli("--help")
    assert out.returncode == 0 and "latest run" in out.stdout
