"""ImageNetV2 index folders, and ImageNet-A/R scored over their own classes; the imagefolder trap warned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evalkit.classes import imagenet1k
from evalkit.readers._common import official_wnids

from ..conftest import run_in_process  # noqa: TID252

COLUMNS = [f"pred{k}" for k in range(1, 6)]


def link_folders(sample_root: Path, root: Path, name=lambda wnid: wnid, keep=lambda wnid: True) -> Path:
    """The shared photos under other folder names (symlinks), e.g. class indices or a class subset."""
    for folder in sorted(p for p in sample_root.iterdir() if p.is_dir() and keep(p.name)):
        (root / name(folder.name)).mkdir(parents=True)
        for photo in folder.iterdir():
            (root / name(folder.name) / photo.name).symlink_to(photo)
    return root


def by_id(predictions):
    return predictions.set_index("id").sort_index()


def test_imagenetv2_index_folders_predict_as_the_wnid_folders(ort_run, sample_root, tmp_path):
    root = link_folders(sample_root, tmp_path / "v2", name=lambda wnid: str(imagenet1k().index[wnid]))
    run, predictions = run_in_process(tmp_path, sample_root, [], ["dataset=imagenetv2", f"dataset.root={root}"])
    _, folder, _ = ort_run
    assert by_id(predictions)[["label", *COLUMNS]].equals(by_id(folder)[["label", *COLUMNS]])
    assert run["metrics"]["top1"] == ort_run[0]["metrics"]["top1"]


def test_imagenetv2_folder_outside_0_to_999_is_refused(sample_root, tmp_path):
    from evalkit.errors import UserError

    (tmp_path / "v2" / "1000").mkdir(parents=True)
    with pytest.raises(UserError, match="'1000' is not a class index 0..999"):
        run_in_process(tmp_path, sample_root, [], ["dataset=imagenetv2", f"dataset.root={tmp_path / 'v2'}"])


@pytest.mark.parametrize("name", ["imagenet_a", "imagenet_r"])
def test_a_and_r_are_scored_over_their_classes_image_by_image(name, ort_run, sample_root, tmp_path):
    wnids = official_wnids(name)
    root = link_folders(sample_root, tmp_path / name, keep=lambda wnid: wnid in wnids)
    run, predictions = run_in_process(tmp_path, sample_root, [], [f"dataset={name}", f"dataset.root={root}"])
    _, folder, logits = ort_run
    space = sorted(imagenet1k().index[w] for w in (p.name for p in root.iterdir()))
    assert run["dataset"]["label_space"] == space and 30 < len(space) < 200
    rows = folder.reset_index().set_index("id").loc[predictions["id"], "index"].to_numpy()
    restricted = np.full_like(logits[rows], -np.inf)
    restricted[:, space] = logits[rows][:, space]
    assert (predictions["pred1"].to_numpy() == restricted.argmax(axis=1)).all()
    assert set(predictions[COLUMNS].to_numpy().ravel()) <= set(space)
    assert any(f"{len(space)} of the 200" in w for w in run["warnings"])  # a partial set says so


def test_the_same_folder_as_imagefolder_warns_of_the_1000_way_trap(sample_root, tmp_path):
    wnids = official_wnids("imagenet_a")
    root = link_folders(sample_root, tmp_path / "a", keep=lambda wnid: wnid in wnids)
    run, _ = run_in_process(tmp_path, sample_root, [], ["dataset=imagefolder", f"dataset.root={root}", "dataset.limit=4"])
    assert any("use dataset=imagenet_a" in w for w in run["warnings"]), run["warnings"]
    assert "label_space" not in run["dataset"]


def test_a_plain_imagefolder_is_not_warned(ort_run):
    assert not any("dataset=imagenet_" in w for w in ort_run[0]["warnings"])


def test_imagenet_sketch_mixes_greyscale_png_and_jpeg(sample_root, tmp_path):
    from PIL import Image

    root = tmp_path / "sketch"
    for k, photo in enumerate(sorted(sample_root.glob("*/*.JPEG"))[:12]):
        (root / photo.parent.name).mkdir(parents=True)
        image = Image.open(photo)
        if k % 2:  # half of them greyscale PNGs, as many sketches are
            image.convert("L").save(root / photo.parent.name / f"{photo.stem}.png")
        else:
            image.save(root / photo.parent.name / photo.name)
    run, predictions = run_in_process(tmp_path, sample_root, [], ["dataset=imagenet_sketch", f"dataset.root={root}"])
    assert run["metrics"]["n"] == 12 and run["metrics"]["no_prediction"] == 0 and run["dataset"]["name"] == "imagenet_sketch"
