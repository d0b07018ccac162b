"""The history index: concurrent writers, rebuild from run directories, the trend plot."""

from __future__ import annotations

import multiprocessing
import shutil

import pandas as pd

from evalkit import history
from evalkit.config import compose
from evalkit.run import evaluate

from ..conftest import tiny_onnx  # noqa: TID252
from .test_cli import imagefolder


def make_runs(tmp_path, n: int):
    root, onnx = imagefolder(tmp_path, n=3), tiny_onnx(tmp_path / "m.onnx")
    return [evaluate(compose([f"model.onnx={onnx}", "model.references=[]", "dataset=imagefolder", f"dataset.root={root}",
                              f"results.dir={tmp_path / 'results'}", "results.history=", "progress=false"]))
            for _ in range(n)]


def _add(args):
    db, run_dir, barrier = args
    barrier.wait()
    history.add(db, run_dir)


def test_runs_finishing_at_the_same_moment_all_land(tmp_path):
    runs = make_runs(tmp_path, 4)
    db = tmp_path / "results" / "history.sqlite"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(len(runs))
    with ctx.Pool(len(runs)) as pool:
        pool.map(_add, [(db, r, barrier) for r in runs])
    assert sorted(history.runs(db)["id"]) == sorted(r.name for r in runs)


def test_the_index_is_rebuilt_from_the_run_directories(tmp_path):
    runs = make_runs(tmp_path, 2)
    db = tmp_path / "results" / "history.sqlite"
    history.add_verdict(db, runs[0], {"run_id": runs[0].name, "checked": "2026-01-01T00:00:00", "passed": True, "checks": []})
    shutil.rmtree(runs[1])
    assert history.rebuild(tmp_path / "results", db) == 1
    frame = history.runs(db)
    assert list(frame["id"]) == [runs[0].name] and frame["passed"].iloc[0] == 1


def test_trend_plot_is_a_png(tmp_path):
    runs = make_runs(tmp_path, 2)
    db = tmp_path / "results" / "history.sqlite"
    for r in runs:
        history.add(db, r)
    out = history.plot_trend(history.runs(db), tmp_path / "trend.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(history.runs(db), pd.DataFrame)


def test_list_and_plot_filter_by_sample_list_and_say_n_and_the_verdict_in_words(tmp_path):
    runs = make_runs(tmp_path, 2)
    other_root = imagefolder(tmp_path / "other", n=5)
    onnx = tmp_path / "m.onnx"
    runs.append(evaluate(compose([f"model.onnx={onnx}", "model.references=[]", "dataset=imagefolder",
                                  f"dataset.root={other_root}", f"results.dir={tmp_path / 'results'}",
                                  "results.history=", "progress=false"])))
    db = tmp_path / "results" / "history.sqlite"
    for r in runs:
        history.add(db, r)
    history.add_verdict(db, runs[0], {"run_id": runs[0].name, "checked": "2026-01-01T00:00:00", "passed": True,
                                      "outcome": "unverified", "checks": []})
    frame = history.runs(db)
    assert list(frame["verdict"]) == ["unverified", "not gated", "not gated"]
    three = frame[frame["n"] == 3]["list_fingerprint"].iloc[0]
    chosen = history.select(frame, samples=three[:10])
    assert sorted(chosen["id"]) == sorted(r.name for r in runs[:2])
    series = history.trend_series(chosen)
    (label,) = series
    assert label.endswith("(n=3)") and three[:8] in label
    assert list(series[label]["id"]) == list(chosen["id"]) and list(series[label]["top1"]) == list(chosen["top1"])

    import subprocess
    import sys

    from ..conftest import REPO  # noqa: TID252

    def command(*args):
        return subprocess.run([sys.executable, "-m", "evalkit.history", *args, "--results", str(tmp_path / "results")],
                              capture_output=True, text=True, cwd=REPO, check=True).stdout

    listed = command("list", "--samples", three[:10])
    assert all(r.name in listed for r in runs[:2]) and runs[2].name not in listed
    assert "unverified" in listed and "not gated" in listed and " recipe " in listed.splitlines()[0]
    assert "wrote" in command("plot", "--samples", three[:10], "--out", str(tmp_path / "t.png"))


def test_verdicts_keep_what_the_gate_wrote(tmp_path):
    runs = make_runs(tmp_path, 1)
    db = tmp_path / "results" / "history.sqlite"
    history.add(db, runs[0])
    verdict = {"run_id": runs[0].name, "checked": "2026-01-01T00:00:00", "passed": False, "outcome": "fail",
               "checks": [{"name": "reference", "passed": False, "detail": "below", "no_verdict": "n/a"}]}
    history.add_verdict(db, runs[0], verdict)
    frame = history.verdicts(db)
    assert list(frame["run_id"]) == [runs[0].name] and frame["report"].iloc[0] == verdict
    assert history.verdicts(tmp_path / "none.sqlite").empty
