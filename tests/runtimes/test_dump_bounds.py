"""Vendor dumps are size-checked from their headers before they are loaded, against the model's class count:
a file that declares more is that file's problem, bounded in memory, and never makes the good files suspects."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from . import dumps
from ..conftest import PRINT_PEAK_RSS, run_in_process  # noqa: TID252

GIB_OF_FLOAT32 = 2**28


def npz_declaring(path: Path, count: int, data_bytes: int) -> Path:
    """A vamp output_*.npz whose output_0 declares ``count`` float32 values and holds ``data_bytes`` zero bytes,
    written in blocks (never held whole) and deflated: a GiB of zeros is a 1 MB file."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as npz, npz.open("output_0.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
        for start in range(0, data_bytes, 1 << 24):
            f.write(bytes(min(1 << 24, data_bytes - start)))
    return path


def test_npz_and_npy_declaring_a_gib_or_a_terabyte_are_refused_without_loading_them(tmp_path):
    """Before, np.load allocated what the header said: 2.1 GB for the GiB, a MemoryError for 10^12 values."""
    folder = tmp_path / "output"
    folder.mkdir()
    npz_declaring(folder / "output_000000.npz", GIB_OF_FLOAT32, 4 * GIB_OF_FLOAT32)
    npz_declaring(folder / "output_000001.npz", 10**12, 1 << 20)
    np.savez(folder / "output_000002.npz", output_0=np.eye(1000, dtype=np.float32)[3][None])
    assert (folder / "output_000000.npz").stat().st_size < 2_000_000
    (tmp_path / "datalist.txt").write_text("/npz/n0/img_a.npz\n/npz/n0/img_b.npz\n/npz/n0/img_c.npz\n")
    ais_bench = tmp_path / "ais_bench"
    ais_bench.mkdir()
    with open(ais_bench / "img_a_0.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
        f.write(bytes(1 << 20))
    code = f"""
import json
from pathlib import Path
from evalkit.contract import Sample
from evalkit.errors import UserError
from evalkit.pipeline import evaluate_offline
from evalkit.runtimes import ascend, vamp
from evalkit.scoring import Scorer
samples = [Sample(i, Path(i + ".JPEG"), 3) for i in ("img_a", "img_b", "img_c")]
tmp = Path({str(tmp_path)!r})
found = {{}}
for allow in (False, True):
    dumped = [vamp.VampNpz(vamp.Options(allow_missing=allow), tmp / "output", tmp / "datalist.txt", 1000),
              ascend.AscendDump(ascend.Options(allow_missing=allow), tmp / "ais_bench", 1000)]
    for dump in dumped:
        try:
            scorer, report = evaluate_offline(samples, dump, Scorer(["topk"]), progress=False)
            found[f"{{type(dump).__name__}} {{allow}}"] = [report.unusable, scorer.result().metrics["top1"]]
        except UserError as e:
            found[f"{{type(dump).__name__}} {{allow}}"] = str(e)
print(json.dumps(found))
{PRINT_PEAK_RSS}
"""
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    found, peak_kib = json.loads(child.stdout.splitlines()[0]), int(child.stdout.splitlines()[1])
    gib = f"output_000000.npz: output_0: declares shape ({GIB_OF_FLOAT32},), {GIB_OF_FLOAT32} values, where 1000"
    tera = "output_000001.npz: output_0: declares shape (1000000000000,), 1000000000000 values, where 1000"
    assert found["VampNpz False"].startswith("2 outputs are unusable") and gib in found["VampNpz False"]
    unusable, top1 = found["VampNpz True"]
    assert unusable["img_a"].startswith(gib) and unusable["img_b"].startswith(tera)
    assert top1 == pytest.approx(100 / 3)  # img_c, intact, is scored right
    assert "img_a_0.npy: declares shape (1000000, 1000000)" in found["AscendDump False"]
    assert found["AscendDump True"][0]["img_a"].startswith("img_a_0.npy: declares shape (1000000, 1000000)")
    assert peak_kib < 500_000


@pytest.mark.parametrize("fmt", ["npy", "bin"])
def test_one_malformed_file_is_its_own_problem_and_the_good_ones_score_right(ort_run, sample_root, tmp_path, fmt):
    """4 bytes too many make 1001 float32 values. Before, the first file set the width all others had to match:
    with allow_missing the good files were the wrong ones, and the run said background_class."""
    ort, predictions, logits = ort_run
    ids = list(predictions["id"])
    folder = dumps.ais_bench(tmp_path / "dump", ids, logits, fmt)
    first = sorted(folder.iterdir())[0]
    if fmt == "bin":
        first.write_bytes(first.read_bytes() + bytes(4))
    else:
        np.save(first, np.zeros((1, 1001), np.float32))
    args = ["runtime=ascend", f"runtime.dump_dir={folder}", "runtime.allow_missing=true"]
    run, got = run_in_process(tmp_path, sample_root, args)
    broken = first.name.removesuffix(f"_0.{fmt}")
    assert list(run["dump"]["unusable_examples"]) == [broken] and run["dump"]["unusable"] == 1
    assert run["metrics"]["background_class"] is False
    assert got["id"].equals(predictions["id"])  # in sample order, beside each sample's own path
    assert all(Path(path).stem == i for path, i in zip(got["path"], got["id"]))
    expected, got = predictions.set_index("id").drop(broken), got.set_index("id")
    assert got.loc[broken, "pred1"] == -1 and got.drop(broken)["pred1"].equals(expected["pred1"])
    assert run["metrics"]["top1"] == pytest.approx(100 * (expected["pred1"] == expected["label"]).sum() / 200)
