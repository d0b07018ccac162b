"""Nothing silently wrong, nothing lost: a run whose results cannot be written keeps its scores for resume=true,
a resumed run scores again what changed, names from config or data stay in their folders, and every bad input
is one message with exit code 2."""

from __future__ import annotations

import errno
import json
import math
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from evalkit.config import compose
from evalkit.errors import UserError, at_least
from evalkit.run import evaluate

from ..conftest import run_cli, tiny_onnx  # noqa: TID252
from .test_cli import imagefolder  # noqa: TID252


def photos(root: Path, n: int, into: Path) -> Path:
    """The first ``n`` class folders of the shared photos, copied into ``into`` (the tests change them)."""
    copy = into / f"photos-{n}"
    for folder in sorted(root.iterdir())[:n]:
        shutil.copytree(folder, copy / folder.name)
    return copy


def run(lite0_onnx: Path, root: Path, results: Path, *extra: str) -> Path:
    return evaluate(compose([f"model.onnx={lite0_onnx}", "dataset=imagefolder", f"dataset.root={root}",
                             f"results.dir={results}", "progress=false", "cache.enabled=false", *extra]))


def predictions(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "predictions.csv")


def test_a_failed_results_write_keeps_the_scores_and_resume_lands_them_without_scoring_again(
        lite0_onnx, sample_root, tmp_path, monkeypatch, capsys):
    root = photos(sample_root, 12, tmp_path)
    whole = run(lite0_onnx, root, tmp_path / "whole")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "results"))

    with monkeypatch.context() as patch:  # the disk fills while the run's folder is written
        patch.setattr(pd.DataFrame, "to_csv", disk_full)
        with pytest.raises(UserError, match="could not be written .*No space left on device.*resume=true"):
            run(lite0_onnx, root, tmp_path / "results")
    out = capsys.readouterr().out
    assert "top-1" in out  # the metrics were printed all the same
    assert not list((tmp_path / "results").glob("*/run.json")) and list((tmp_path / "results").glob(".partial/*"))

    landed = run(lite0_onnx, root, tmp_path / "results", "resume=true")
    assert "resuming: 12 of 12 images already scored" in capsys.readouterr().out
    assert predictions(landed).drop(columns="path").equals(predictions(whole).drop(columns="path"))
    assert json.loads((landed / "run.json").read_text())["metrics"] == json.loads((whole / "run.json").read_text())["metrics"]
    assert not list((tmp_path / "results").glob(".partial/*"))


def test_an_image_changed_between_the_stop_and_resume_is_scored_again(lite0_onnx, sample_root, tmp_path, monkeypatch):
    root = photos(sample_root, 6, tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(pd.DataFrame, "to_csv", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        with pytest.raises(UserError):
            run(lite0_onnx, root, tmp_path / "results")
    # one photo is replaced by another class's photo (same name, other bytes)
    first, other = sorted(root.rglob("*.JPEG"))[0], sorted(sample_root.rglob("*.JPEG"))[-1]
    first.write_bytes(other.read_bytes())
    resumed = run(lite0_onnx, root, tmp_path / "results", "resume=true")
    fresh = run(lite0_onnx, root, tmp_path / "fresh")
    assert predictions(resumed).equals(predictions(fresh).assign(path=predictions(resumed)["path"]))
    resumed_run, fresh_run = (json.loads((d / "run.json").read_text()) for d in (resumed, fresh))
    assert resumed_run["dataset"]["content_fingerprint"] == fresh_run["dataset"]["content_fingerprint"]


def test_a_damaged_history_index_is_rebuilt_and_the_run_still_lands(lite0_onnx, sample_root, tmp_path, capsys):
    root = photos(sample_root, 3, tmp_path)
    run(lite0_onnx, root, tmp_path / "results")
    (tmp_path / "results" / "history.sqlite").write_bytes(b"this is not a database" * 100)
    second = run(lite0_onnx, root, tmp_path / "results")
    captured = capsys.readouterr()
    assert "top-1" in captured.out and "history index" in captured.err and "rebuilding" in captured.err
    with sqlite3.connect(tmp_path / "results" / "history.sqlite") as db:
        assert {r[0] for r in db.execute("SELECT id FROM runs")} >= {second.name}


@pytest.mark.parametrize("name", ["/tmp/evalkit-escape/x", "../../escape", "a" * 300, "mmcls/cspresnext50"])
def test_names_from_the_config_stay_in_their_folders(name, tmp_path):
    from evalkit import preprocess
    from evalkit.config import ModelConfig
    from evalkit.export import cached_path
    from evalkit.preprocess.timm import Params
    from evalkit.record import new_run_id
    from evalkit.weights import Weights

    exported = cached_path(ModelConfig(name=name, arch="x"), Weights(Path("w"), "0" * 64), preprocess.build(Params()),
                           tmp_path)
    assert exported.parent == tmp_path / "onnx" and len(exported.name) < 120
    run_id = new_run_id(name, "ort", "fp32")
    assert "/" not in run_id and ".." not in run_id and len(run_id) < 120


def test_a_paddleclas_label_file_is_matched_to_the_root_never_beside_it(tmp_path):
    val = imagefolder(tmp_path, n=3)
    flat = tmp_path / "data" / "val"
    flat.mkdir(parents=True)
    images = sorted(val.rglob("*.JPEG"))
    for image in images:
        (flat / image.name).write_bytes(image.read_bytes())
    (tmp_path / "data" / "secret").mkdir()
    (tmp_path / "data" / "secret" / "x.JPEG").write_bytes(images[0].read_bytes())
    labels = tmp_path / "data" / "val_list.txt"
    good = [f"val/{image.name} 0" for image in images]
    labels.write_text("\n".join(good) + "\n")
    cfg = ["dataset=labelfile", f"dataset.root={flat}", f"dataset.labels={labels}"]
    from evalkit.dataset import load

    assert len(load(compose(cfg).dataset)) == 3
    labels.write_text("\n".join([*good, "val/../secret/x.JPEG 0", "secret/x.JPEG 0"]) + "\n")
    with pytest.raises(UserError, match="outside the dataset root|does not exist"):
        load(compose(cfg).dataset)


def bad_inputs(tmp: Path) -> dict[str, list[str]]:
    """Each a user's mistake or a hostile file: the overrides that make it."""
    root = imagefolder(tmp, n=3)
    onnx = tiny_onnx(tmp / "m.onnx")
    (tmp / "empty.onnx").write_bytes(b"")
    flat = [f"dataset.root={root / sorted(p.name for p in root.iterdir())[0]}"]
    (tmp / "latin1.txt").write_bytes("caf\xe9.JPEG 1\n".encode("latin-1"))
    (tmp / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    common = ["dataset=imagefolder", f"dataset.root={root}", f"results.dir={tmp / 'results'}"]
    return {
        "results folder not writable": [f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={root}",
                                        "results.dir=/sys/evalkit-results"],
        "cache folder not writable": [f"model.onnx={onnx}", *common, "cache_dir=/sys/evalkit-cache",
                                      "cache.dir=/sys/evalkit-cache/tensors"],
        "empty model.onnx": [f"model.onnx={tmp / 'empty.onnx'}", *common],
        "a Latin-1 label file": [f"model.onnx={onnx}", "dataset=labelfile", *flat,
                                                             f"dataset.labels={tmp / 'latin1.txt'}",
                                                             f"results.dir={tmp / 'results'}"],
        "deeply nested JSON labels": [f"model.onnx={onnx}", *common, f"dataset.real_labels={tmp / 'nested.json'}"],
        "a 5,000-character path": [f"model.onnx={onnx}", "dataset=imagefolder", "dataset.root=" + "/x" * 2500,
                                   f"results.dir={tmp / 'results'}"],
        "checkpoint_s=nan": [f"model.onnx={onnx}", *common, "results.checkpoint_s=nan"],
        "batch_size=inf": [f"model.onnx={onnx}", *common, "runtime.batch_size=1e999"],
    }


@pytest.mark.parametrize("case", ["results folder not writable", "cache folder not writable", "empty model.onnx",
                                        "a Latin-1 label file", "deeply nested JSON labels",
                                        "a 5,000-character path", "checkpoint_s=nan", "batch_size=inf"])
def test_every_bad_input_is_one_line_and_exit_2(case, tmp_path):
    out = run_cli(*bad_inputs(tmp_path)[case], cwd=tmp_path)
    assert out.returncode == 2, (case, out.stderr[-2000:])
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert not list((tmp_path / "results").glob("*/run.json"))


def test_a_label_file_written_by_windows_tools_reads_as_the_same_labels(tmp_path):
    val = imagefolder(tmp_path, n=3)
    first = sorted(val.iterdir())[0]
    lines = "".join(f"{p.name} 0\n" for p in sorted(first.iterdir()))
    from evalkit.dataset import load

    counts = []
    for name, data in {"utf8.txt": lines.encode(), "bom.txt": lines.encode("utf-8-sig"),
                       "utf16.txt": lines.encode("utf-16")}.items():
        (tmp_path / name).write_bytes(data)
        samples = load(compose(["dataset=labelfile", f"dataset.root={first}", f"dataset.labels={tmp_path / name}"]).dataset)
        counts.append([(s.id, s.label) for s in samples])
    assert counts[0] == counts[1] == counts[2] and counts[0]


def test_counts_beyond_the_cores_are_capped_with_a_warning_and_non_finite_numbers_refused(tmp_path):
    out = run_cli(f"model.onnx={tiny_onnx(tmp_path / 'm.onnx')}", "dataset=imagefolder",
              f"dataset.root={imagefolder(tmp_path, n=3)}", f"results.dir={tmp_path / 'r'}", "workers=1000",
              "runtime.sessions=1000", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "workers=1000 is more than the" in out.stderr and "runtime.sessions=1000 is more than the" in out.stderr
    recorded = json.loads(next((tmp_path / "r").glob("*/run.json")).read_text())
    import os

    assert recorded["runtime"]["decode_workers"] == len(os.sched_getaffinity(0))
    assert recorded["runtime"]["info"]["sessions"] <= len(os.sched_getaffinity(0))
    for value in (math.nan, math.inf):
        with pytest.raises(UserError, match="not a finite number"):
            at_least("x", value, 0)
