"""Device inputs written by evalkit close the loop: inputs -> (device) -> dump -> evalkit scores."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime
import pytest

from evalkit import preprocess
from evalkit.config import compose

from ..conftest import REPO, run_in_process  # noqa: TID252
from ..runtimes import dumps  # noqa: TID252



def inputs_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "evalkit.inputs", *args, "progress=false"], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_ascend_bins_through_a_device_score_as_ort(ort_run, lite0_onnx, sample_root, tmp_path):
    out = inputs_cli("runtime=ascend", "dataset=imagefolder", f"dataset.root={sample_root}",
                     f"output={tmp_path / 'prep_dataset'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    bins = sorted((tmp_path / "prep_dataset").glob("*.bin"))
    info = (tmp_path / "prep_dataset.info").read_text().splitlines()
    assert len(bins) == 200 == len(info) and info[0].endswith(" 224 224") and info[0].startswith("0 /")
    assert all(b.stat().st_size == 3 * 224 * 224 * 4 for b in bins)
    # the "device": the same ONNX on the exported .bin files, one output file per input as benchmark writes them
    session = onnxruntime.InferenceSession(str(lite0_onnx), providers=["CPUExecutionProvider"])
    ids = [line.split()[1].rsplit("/", 1)[1][:-4] for line in info]
    x = np.stack([np.fromfile(line.split()[1], dtype=np.float32).reshape(3, 224, 224) for line in info])
    folder = dumps.benchmark(tmp_path / "dump", ids, session.run(None, {"input": x})[0])
    run, got = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
    assert [run["metrics"][f"top{k}"] for k in range(1, 6)] == [ort_run[0]["metrics"][f"top{k}"] for k in range(1, 6)]
    assert (got["pred1"].values == ort_run[1]["pred1"].values).all()


def test_bins_hold_the_recipe_output(sample_root, tmp_path):
    out = inputs_cli("runtime=ascend", "model=ascend/cspresnext50", "dataset=imagefolder", f"dataset.root={sample_root}",
                     "dataset.limit=3", f"output={tmp_path / 'prep'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    recipe = preprocess.build(compose(["model=ascend/cspresnext50"]).preprocess)
    first = sorted(sample_root.glob("*/*.JPEG"))[0]
    assert np.array_equal(np.fromfile(tmp_path / "prep" / f"{first.stem}.bin", np.float32).reshape(3, 224, 224),
                          recipe(first.read_bytes()))


def test_vamp_inputs_are_image2npz_files_and_a_datalist(sample_root, tmp_path):
    out = inputs_cli("runtime=vamp", "dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=4",
                     f"output={tmp_path / 'npz'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "npz_datalist.txt").read_text().splitlines()
    first = sorted(sample_root.glob("*/*.JPEG"))[0]
    assert len(lines) == 4 and lines[0] == str((tmp_path / "npz" / first.parent.name / f"{first.stem}.npz").resolve())
    with np.load(lines[0], allow_pickle=False) as npz:
        expected = cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
        assert npz.files == ["input_0"] and npz["input_0"].dtype == np.uint8
        assert np.array_equal(npz["input_0"], expected)


@pytest.mark.parametrize("args,message", [
    (["runtime=ort"], "reads no exported inputs"),
    (["runtime=ascend"], "name the output"),
])
def test_bad_requests_exit_2(sample_root, tmp_path, args, message):
    extra = [f"output={tmp_path / 'x'}"] if "name the output" not in message else []
    out = inputs_cli(*args, "dataset=imagefolder", f"dataset.root={sample_root}", *extra, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and not (tmp_path / "x").exists()


def test_existing_output_is_not_overwritten(sample_root, tmp_path):
    (tmp_path / "prep").mkdir()
    out = inputs_cli("runtime=ascend", "dataset=imagefolder", f"dataset.root={sample_root}", f"output={tmp_path / 'prep'}", cwd=tmp_path)
    assert out.returncode == 2 and "already exists" in out.stderr
