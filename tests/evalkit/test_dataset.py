"""Dataset layouts, sorted-wnid labels, deterministic subsets and the errors users hit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evalkit import dataset
from evalkit.classes import imagenet1k
from evalkit.config import compose
from evalkit.contract import GROUPS, load, samples_fingerprint
from evalkit.errors import UserError
from evalkit.run import evaluate

from ..conftest import run_cli, tiny_onnx  # noqa: TID252
from .test_cli import imagefolder

TENCH, GOLDFISH, SEA_SNAKE = "n01440764", "n01443537", "n01751748"


def options(layout: str, **keys):
    """The ``dataset`` config a ``dataset=<layout>`` run gets: that reader's Options."""
    return load(GROUPS["reader"], layout).Options(name="t", **keys)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"jpeg bytes are not read when listing")
    return path


def test_class_list_is_sorted_wnids_with_names():
    classes = imagenet1k()
    assert len(classes) == 1000
    assert classes.index[TENCH] == 0 and classes.index[SEA_SNAKE] == 65
    assert classes.names[0] == "tench" and classes.wnids[999] == "n15075141"


def test_imagefolder_labels_are_sorted_wnid_indices(tmp_path):
    touch(tmp_path / GOLDFISH / "b.JPEG")
    touch(tmp_path / TENCH / "a.JPEG")
    touch(tmp_path / TENCH / "notes.txt")
    samples = dataset.load(options("imagefolder", root=str(tmp_path)))
    assert [(s.id, s.label) for s in samples] == [("a", 0), ("b", 1)]


def test_imagefolder_on_the_shared_sample(sample_root):
    samples = dataset.load(options("imagefolder", root=str(sample_root)))
    assert len(samples) == 200
    assert sorted({s.label for s in samples}) == list(range(0, 1000, 5))


def test_caffe_label_file(tmp_path):
    touch(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    touch(tmp_path / "val" / "ILSVRC2012_val_00000002.JPEG")
    labels = tmp_path / "val.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n")
    samples = dataset.load(options("labelfile", root=str(tmp_path / "val"), labels=str(labels)))
    assert [(s.id, s.label) for s in samples] == [("ILSVRC2012_val_00000001", 65), ("ILSVRC2012_val_00000002", 970)]


def test_paddleclas_label_file_paths_relative_to_the_image_root_parent(tmp_path):
    touch(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    labels = tmp_path / "val_list.txt"
    labels.write_text("val/ILSVRC2012_val_00000001.JPEG 65\n")
    samples = dataset.load(options("labelfile", root=str(tmp_path / "val"), labels=str(labels)))
    assert [(s.id, s.label) for s in samples] == [("ILSVRC2012_val_00000001", 65)]


def test_files_layout_takes_wnids_or_indices(tmp_path):
    a, b = touch(tmp_path / "a.png"), touch(tmp_path / "b.png")
    samples = dataset.load(options("files", files=[f"{a} {SEA_SNAKE}", f"{b} 3"]))
    assert [(s.id, s.label) for s in samples] == [("a", 65), ("b", 3)]


def test_subsets_are_deterministic_first_by_id(tmp_path):
    for wnid in (TENCH, GOLDFISH):
        for i in (3, 1, 2):
            touch(tmp_path / wnid / f"{wnid}_{i}.JPEG")
    cfg = options("imagefolder", root=str(tmp_path), per_class=2)
    assert [s.id for s in dataset.load(cfg)] == [f"{TENCH}_1", f"{TENCH}_2", f"{GOLDFISH}_1", f"{GOLDFISH}_2"]
    cfg.per_class, cfg.limit = None, 4
    assert [s.id for s in dataset.load(cfg)] == sorted(f"{w}_{i}" for w in (TENCH, GOLDFISH) for i in (1, 2, 3))[:4]
    assert samples_fingerprint(dataset.load(cfg)) == samples_fingerprint(dataset.load(cfg))


@pytest.mark.parametrize("case,message", [
    ("missing root", "no such folder"),
    ("empty folder", "no images found"),
    ("unknown wnid", "not an ImageNet-1k wnid"),
    ("label out of range", "out of range"),
    ("label not a class", "neither a class index nor a wnid"),
    ("missing image", "does not exist"),
    ("malformed line", "expected 'path label'"),
    ("duplicate id", "share the id"),
    ("zero limit", "must be >= 1"),
])
def test_bad_datasets_name_the_problem(tmp_path, case, message):
    root, labels = tmp_path / "val", tmp_path / "val.txt"
    root.mkdir()
    touch(root / "x.JPEG")
    layout, keys = "labelfile", {"root": str(root), "labels": str(labels)}
    if case == "missing root":
        keys["root"] = str(tmp_path / "nope")
    elif case == "empty folder":
        layout, keys = "imagefolder", {"root": str(tmp_path / "empty")}
        (tmp_path / "empty").mkdir()
    elif case == "unknown wnid":
        layout, keys = "imagefolder", {"root": str(root)}
        touch(root / "cats" / "y.JPEG")
    elif case == "duplicate id":
        layout, keys = "imagefolder", {"root": str(root)}
        touch(root / TENCH / "y.JPEG")
        touch(root / GOLDFISH / "y.JPEG")
        (root / "x.JPEG").unlink()
    line = {"label out of range": "x.JPEG 1000", "label not a class": "x.JPEG cat",
            "missing image": "y.JPEG 1", "malformed line": "x.JPEG"}.get(case, "x.JPEG 1")
    labels.write_text(line + "\n")
    with pytest.raises(UserError, match=message):
        dataset.load(options(layout, **keys, limit=0 if case == "zero limit" else None))


def run_args(root: Path, tmp_path: Path) -> list[str]:
    return [f"model.onnx={tiny_onnx(tmp_path / 'm.onnx')}", "model.references=[]", "dataset=imagefolder",
            f"dataset.root={root}", f"results.dir={tmp_path / 'r'}", "progress=false", "cache.enabled=false"]


def test_a_dangling_symlink_is_named_in_the_run_s_warnings_and_strict_refuses_it(tmp_path):
    root = imagefolder(tmp_path, n=3)
    gone = root / TENCH / "gone.JPEG"
    gone.symlink_to(tmp_path / "deleted.JPEG")
    run_dir = evaluate(compose(run_args(root, tmp_path)))
    run = json.loads((run_dir / "run.json").read_text())
    assert run["metrics"]["n"] == 3
    assert f"1 files skipped, not scored: {gone} (a symlink to nothing)" in run["warnings"]
    strict = run_cli(*run_args(root, tmp_path), "dataset.strict=true", cwd=tmp_path)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert f"{gone} (a symlink to nothing); dataset.strict=true" in strict.stderr


def test_images_beside_the_class_folders_are_named_not_dropped(tmp_path):
    touch(tmp_path / TENCH / "a.JPEG")
    stray = touch(tmp_path / "b.JPEG")
    notes: list[str] = []
    samples = dataset.load(options("imagefolder", root=str(tmp_path)), notes)
    assert [s.id for s in samples] == ["a"] and notes == [f"1 files skipped, not scored: {stray} (not in a <wnid>/ folder)"]
    with pytest.raises(UserError, match=rf"{stray} \(not in a <wnid>/ folder\); dataset.strict=true"):
        dataset.load(options("imagefolder", root=str(tmp_path), strict=True))


@pytest.mark.parametrize("name", ["a\x1bb.JPEG", "a\x07b.JPEG"])
def test_an_id_with_a_control_character_is_refused_naming_the_file(tmp_path, name):
    """An escape or a bell in a name a label file lists would garble the lists evalkit writes (and a terminal)."""
    image = touch(tmp_path / "val" / name)
    labels = tmp_path / "val.txt"
    labels.write_bytes(f"{name} 65\n".encode())
    with pytest.raises(UserError, match=rf"{re.escape(repr(str(image)))}: image id {re.escape(repr(image.stem))} .*control"):
        dataset.load(options("labelfile", root=str(tmp_path / "val"), labels=str(labels)))
