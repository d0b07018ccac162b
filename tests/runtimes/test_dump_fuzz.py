"""Property tests of the dump readers: any file content gives a score or a documented error, never garbage."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalkit.dataset import Sample
from evalkit.errors import UserError
from evalkit.pipeline import evaluate_offline
from evalkit.scoring import Scorer
from evalkit.runtimes import ascend, vamp

SAMPLES = [Sample("img_a", Path("a.JPEG"), 7), Sample("img_b", Path("b.JPEG"), 3)]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def score_ascend(files: dict[str, bytes], **options):
    folder = Path(tempfile.mkdtemp())
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        dump = ascend.AscendDump(ascend.Options(dump_dir=str(folder), allow_missing=True, **options), folder, 1000)
        scorer, report = evaluate_offline(SAMPLES, dump, Scorer(["topk"]), progress=False)
        return scorer.result(), report
    finally:
        shutil.rmtree(folder)


def valid_row(label_first: int) -> np.ndarray:
    row = np.zeros(1000, np.float32)
    row[label_first] = 1.0
    return row


@FUZZ
@given(st.binary(max_size=9000))
def test_any_bin_content_is_scored_only_when_it_is_a_whole_output(data):
    """img_a gets arbitrary bytes; img_b a correct output. img_b is always right; img_a is right
    only if its bytes really are 1000 finite values (the model's class count) ranking class 7 first."""
    files = {"img_a_1.bin": data, "img_b_1.bin": valid_row(3).tobytes()}
    result, report = score_ascend(files)
    predictions = result.predictions.set_index("id")
    assert predictions.loc["img_b", "pred1"] == 3
    values = None
    for dtype in ("<f4", "<f2"):
        if len(data) == 1000 * np.dtype(dtype).itemsize:
            values = np.frombuffer(data, dtype).astype(np.float32)
            break
    if values is None or not np.isfinite(values).all():
        assert "img_a" in report.unusable and predictions.loc["img_a", "pred1"] == -1
    else:
        assert predictions.loc["img_a", "pred1"] == int(np.argsort(-values, kind="stable")[0])


@FUZZ
@given(st.text(max_size=300))
def test_any_txt_content_is_a_score_or_reported_unusable(text):
    result, report = score_ascend({"img_a_1.txt": text.encode("utf-8", "surrogatepass"), "img_b_1.txt": b"1 2 3"},
                                  format="benchmark")
    assert "img_b" in report.unusable  # 3 values, never padded or guessed
    assert result.predictions.set_index("id").loc["img_b", "pred1"] == -1


@FUZZ
@given(st.lists(st.text(alphabet="abc_.0123456789", min_size=1, max_size=12).filter(lambda n: n not in (".", "..")),
                max_size=6))
def test_any_file_names_are_matched_by_stem_or_ignored(names):
    files = {n: valid_row(1).tobytes() for n in names}
    try:
        _, report = score_ascend(files, format="benchmark")
    except UserError as e:
        assert "more than one output" in str(e)
        return
    assert set(report.missing) <= {"img_a", "img_b"}


@FUZZ
@given(st.binary(max_size=3000))
def test_any_npz_content_is_an_output_or_reported_unusable(data):
    folder = Path(tempfile.mkdtemp())
    try:
        (folder / "output_000000.npz").write_bytes(data)
        datalist = folder / "list.txt"
        datalist.write_text("/npz/n0/img_a.npz\n")
        runtime = vamp.VampNpz(vamp.Options(allow_missing=True), folder, datalist, 1000)
        scorer, report = evaluate_offline(SAMPLES[:1], runtime, Scorer(["topk"]), progress=False)
        scored = scorer.result().metrics["no_prediction"] == 0
        assert scored != ("img_a" in report.unusable)  # either a real output or reported, never both or neither
    finally:
        shutil.rmtree(folder)


@FUZZ
@given(st.lists(st.text(max_size=80), max_size=8))
def test_any_result_txt_is_parsed_or_refused_with_its_line(lines):
    folder = Path(tempfile.mkdtemp())
    try:
        path = folder / "result.txt"
        path.write_text("\n".join(lines))
        try:
            runtime = vamp.ResultTxt(vamp.Options(allow_missing=True), path, num_classes=1000)
        except UserError as e:
            assert "not a result.txt line" in str(e) or "predictions per image" in str(e)
            return
        try:
            scorer, _ = evaluate_offline(SAMPLES, runtime, Scorer(["topk"]), progress=False)
        except UserError as e:
            assert "more than one output" in str(e)
            return
        assert scorer.result().metrics["n"] == 2
    finally:
        shutil.rmtree(folder)


def test_npz_with_pickled_objects_is_refused_not_loaded(tmp_path):
    np.save(tmp_path / "x.npy", np.array([object()], dtype=object), allow_pickle=True)
    (tmp_path / "img_a_0.npy").write_bytes((tmp_path / "x.npy").read_bytes())
    dump = ascend.AscendDump(ascend.Options(dump_dir=str(tmp_path), allow_missing=True, format="ais_bench"), tmp_path,
                             1000)
    _, report = evaluate_offline(SAMPLES[:1], dump, Scorer(["topk"]), progress=False)
    assert report.unusable["img_a"] == "img_a_0.npy: holds object values, not numbers"


pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
