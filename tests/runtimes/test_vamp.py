"""VastAI vamp npz outputs and result.txt score exactly as the run that made the logits, by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evalkit.classes import imagenet1k
from evalkit.errors import UserError

from . import dumps
from ..conftest import run_in_process  # noqa: TID252

TOPK = [f"top{k}" for k in range(1, 6)]


def image_paths(sample_root, ids):
    by_stem = {p.stem: p for p in sample_root.glob("*/*.JPEG")}
    return [str(by_stem[i]) for i in ids]


def test_npz_outputs_pair_with_the_datalist_by_line_not_by_sorted_listing(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    order = np.random.default_rng(0).permutation(len(predictions))  # vamp ran the datalist in another order
    ids = list(predictions["id"][order])
    folder, datalist = dumps.vamp(tmp_path / "output", [f"/npz/{i[:9]}/{i}.npz" for i in ids], logits[order])
    run, got = run_in_process(tmp_path, sample_root, ["runtime=vamp", f"runtime.output_dir={folder}", f"runtime.datalist={datalist}"])
    assert [run["metrics"][k] for k in TOPK] == [ort_run[0]["metrics"][k] for k in TOPK]
    assert (got["pred1"].values == predictions["pred1"].values).all()


def test_result_txt_scores_by_class_id(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    path = dumps.result_txt(tmp_path / "result.txt", image_paths(sample_root, predictions["id"]), logits)
    run, got = run_in_process(tmp_path, sample_root, ["runtime=vamp", f"runtime.result_txt={path}"])
    assert [run["metrics"][k] for k in TOPK] == [ort_run[0]["metrics"][k] for k in TOPK]


def test_atm_and_the_two_cranes_are_scored_by_id(tmp_path, sample_root):
    """VastAI's eval_topk.py never credits class 480 (its name list is cut) and credits both 'crane's."""
    (tmp_path / "img").mkdir()
    cases = {"atm": (480, 480), "crane_bird": (134, 517), "crane_machine": (517, 517)}  # name: (label, predicted)
    for name in cases:
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / f"{name}.JPEG")
    (tmp_path / "labels.txt").write_text("".join(f"{n}.JPEG {lab}\n" for n, (lab, _) in cases.items()))
    logits = np.zeros((3, 1000), np.float32)
    for row, (_, pred) in zip(logits, cases.values()):
        row[pred] = 10
    path = dumps.result_txt(tmp_path / "result.txt", [f"/val/x/{n}.JPEG" for n in cases], logits)
    assert "class name: crane" in path.read_text() and imagenet1k().wnids[480] == "n02977058"
    run, got = run_in_process(tmp_path, sample_root, ["runtime=vamp", f"runtime.result_txt={path}"],
                           ["dataset=labelfile", f"dataset.root={tmp_path / 'img'}", f"dataset.labels={tmp_path / 'labels.txt'}"])
    hits = dict(zip(got["id"], got["pred1"] == got["label"]))
    assert hits == {"atm": True, "crane_bird": False, "crane_machine": True}


def test_result_txt_appended_twice_is_a_duplicate(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    paths = image_paths(sample_root, predictions["id"])
    dumps.result_txt(tmp_path / "result.txt", paths, logits)
    dumps.result_txt(tmp_path / "result.txt", paths[:1], logits[:1])  # a rerun appends
    with pytest.raises(UserError, match="1 images have more than one output"):
        run_in_process(tmp_path, sample_root, ["runtime=vamp", f"runtime.result_txt={tmp_path / 'result.txt'}"])


def test_broken_npz_dumps(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    ids = list(predictions["id"])
    folder, datalist = dumps.vamp(tmp_path / "output", [f"/npz/{i}.npz" for i in ids], logits)
    (folder / "output_000003.npz").unlink()                      # missing
    np.savez(folder / "output_000004.npz", other=np.zeros(1000))  # wrong key
    np.savez(folder / "output_000200.npz", output_0=np.zeros(1000))  # beyond the datalist
    args = ["runtime=vamp", f"runtime.output_dir={folder}", f"runtime.datalist={datalist}"]
    with pytest.raises(UserError, match=r"1 images have no output .*1 outputs are unusable .*no 'output_0'"):
        run_in_process(tmp_path, sample_root, args)
    run, _ = run_in_process(tmp_path, sample_root, [*args, "runtime.allow_missing=true"])
    assert (run["dump"]["missing"], run["dump"]["unusable"], run["dump"]["extra"]) == (1, 1, 1)
    assert run["metrics"]["no_prediction"] == 2


def test_vamp_needs_its_files(tmp_path, sample_root):
    with pytest.raises(UserError, match="runtime.output_dir=DIR and runtime.datalist=FILE"):
        run_in_process(tmp_path, sample_root, ["runtime=vamp"])
    bad = tmp_path / "result.txt"
    bad.write_text("not a result line\n")
    with pytest.raises(UserError, match="not a result.txt line"):
        run_in_process(tmp_path, sample_root, ["runtime=vamp", f"runtime.result_txt={bad}"])


def test_a_result_txt_with_fewer_than_five_predictions_per_image_is_refused(ort_run, sample_root, tmp_path):
    """Top-0 lines only: top-5 is not known, so it is not reported (before, it equalled top-1); an image with fewer
    lines than the others is that image's unusable output."""
    _, predictions, logits = ort_run
    full = dumps.result_txt(tmp_path / "full.txt", image_paths(sample_root, predictions["id"]), logits)
    top0 = tmp_path / "result.txt"
    top0.write_text("".join(line for line in full.read_text().splitlines(keepends=True) if "Relay top-0 " in line))
    with pytest.raises(UserError, match=rf"{top0}: lists 1 predictions per image \(top-0..top-0\), and top-5 needs 5"):
        run_in_process(tmp_path, sample_root, ["runtime=vamp", f"runtime.result_txt={top0}", "runtime.allow_missing=true"])
    one_short = tmp_path / "one_short.txt"
    one_short.write_text("".join(full.read_text().splitlines(keepends=True)[:-1]))  # the last image's top-4 gone
    with pytest.raises(UserError, match=r"1 outputs are unusable .*top-k lines \[0, 1, 2, 3\] are not 0..4"):
        run_in_process(tmp_path, sample_root, ["runtime=vamp", f"runtime.result_txt={one_short}"])
