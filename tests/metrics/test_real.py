"""ImageNet-ReaL: real.json matched by file name, scored as timm's RealLabelsImagenet, bad files refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalkit.classes import imagenet1k

from ..conftest import run_cli, run_in_process  # noqa: TID252

COLUMNS = [f"pred{k}" for k in range(1, 6)]


@pytest.fixture(scope="module")
def val_layout(sample_root, tmp_path_factory):
    """The 200 shared photos named as ILSVRC2012 validation images (in reverse order, so position != name order),
    a Caffe label file, and a real.json whose sets mix: the label, the label and another, empty, another only."""
    root = tmp_path_factory.mktemp("real")
    photos = sorted(sample_root.glob("*/*.JPEG"))[::-1]
    (root / "val").mkdir()
    lines, real = [], [[] for _ in range(50_000)]
    for i, photo in enumerate(photos):
        name = f"ILSVRC2012_val_{i * 7 + 3:08d}"
        (root / "val" / f"{name}.JPEG").symlink_to(photo)
        label = imagenet1k().index[photo.parent.name]
        lines.append(f"{name}.JPEG {label}\n")
        real[i * 7 + 2] = [[label], [label, (label + 1) % 1000], [], [(label + 1) % 1000]][i % 4]
    (root / "val.txt").write_text("".join(lines))
    (root / "real.json").write_text(json.dumps(real))
    return root, real


def test_real_top1_top5_equal_an_independent_computation(val_layout, sample_root, tmp_path):
    root, real = val_layout
    run, predictions = run_in_process(tmp_path, sample_root, [], [
        "dataset=labelfile", f"dataset.root={root / 'val'}", f"dataset.labels={root / 'val.txt'}",
        f"dataset.real_labels={root / 'real.json'}"])
    sets = [real[int(i.rsplit("_", 1)[1]) - 1] for i in predictions["id"]]
    kept = [k for k, s in enumerate(sets) if s]
    top = predictions[COLUMNS].to_numpy()
    hit = lambda k, n: any(p in sets[k] for p in top[k, :n])  # noqa: E731
    assert run["metrics"]["real_n"] == len(kept) == 150
    assert run["metrics"]["real_top1"] == pytest.approx(100 * np.mean([hit(k, 1) for k in kept]))
    assert run["metrics"]["real_top5"] == pytest.approx(100 * np.mean([hit(k, 5) for k in kept]))
    assert run["metrics"]["real_top1"] != run["metrics"]["top1"]  # another label set, another number


def test_without_real_labels_there_are_no_real_keys(ort_run):
    assert not any(k.startswith("real") for k in ort_run[0]["metrics"])


@pytest.mark.parametrize("case,message", [
    ("short", "expected a list of 50000 lists"),
    ("not json", "not valid JSON"),
    ("names", "'n01440764_tench' is not one"),
])
def test_bad_real_json_or_image_names_exit_2(case, message, val_layout, sample_root, tmp_path):
    root, real = val_layout
    path = tmp_path / "real.json"
    path.write_text({"short": json.dumps(real[:1000]), "not json": "[[1], [2]", "names": json.dumps(real)}[case])
    dataset = (["dataset=imagefolder", f"dataset.root={sample_root}"] if case == "names" else
               ["dataset=labelfile", f"dataset.root={root / 'val'}", f"dataset.labels={root / 'val.txt'}"])
    out = run_cli(*dataset, "dataset.limit=2", f"dataset.real_labels={path}", cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr, out.stderr
