"""Ascend dumps (benchmark, ais_bench, msame, MindSpore 310) score exactly as the run that made the logits."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.errors import UserError

from . import dumps
from ..conftest import run_in_process  # noqa: TID252

TOPK = [f"top{k}" for k in range(1, 6)]
PREDS = [f"pred{k}" for k in range(1, 6)]


def assert_same_scores(run, predictions, ort_run, exact_order=True):
    ort, ort_predictions, _ = ort_run
    assert [run["metrics"][k] for k in TOPK] == [ort["metrics"][k] for k in TOPK]
    assert run["metrics"]["n"] == 200 and run["dump"]["missing"] == 0
    if exact_order:
        assert predictions[["id", "label", *PREDS]].equals(ort_predictions[["id", "label", *PREDS]])


@pytest.mark.parametrize("write,fmt", [
    (lambda d, i, x: dumps.benchmark(d, i, x, "txt"), "benchmark"),
    (lambda d, i, x: dumps.benchmark(d, i, x, "bin"), "benchmark"),
    (lambda d, i, x: dumps.ais_bench(d, i, x, "npy"), "ais_bench"),
    (lambda d, i, x: dumps.ais_bench(d, i, x, "bin"), "ais_bench"),
    (lambda d, i, x: dumps.ais_bench(d, i, x, "txt"), "ais_bench"),
    (dumps.ais_bench_batched, "ais_bench"),
    (dumps.msame, "msame"),
], ids=["benchmark-txt", "benchmark-bin", "ais_bench-npy", "ais_bench-bin", "ais_bench-txt", "ais_bench-batched", "msame"])
def test_dump_formats_score_exactly_as_ort(ort_run, sample_root, tmp_path, write, fmt):
    _, predictions, logits = ort_run
    folder = write(tmp_path / "dump", list(predictions["id"]), logits)
    run, got = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
    assert run["runtime"]["info"]["format"] == fmt
    assert_same_scores(run, got, ort_run)


def test_mindspore_float16_outputs(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    folder = dumps.mindspore310(tmp_path / "result_Files", list(predictions["id"]), logits)
    run, got = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}", "runtime.format=mindspore310"])
    assert_same_scores(run, got, ort_run, exact_order=False)  # float16 rounding may reorder near-ties below the top
    assert (got["pred1"] == ort_run[1]["pred1"]).all()


def test_1001_class_outputs_are_shifted(ort_run, sample_root, tmp_path):
    """A head with background at index 0 is the model's to declare (model.num_classes=1001), not the files' to say."""
    _, predictions, logits = ort_run
    with_background = np.concatenate([logits.min(axis=1, keepdims=True) - 1, logits], axis=1)
    folder = dumps.benchmark(tmp_path / "dump", list(predictions["id"]), with_background, "bin")
    with pytest.raises(UserError, match=r"200 outputs are unusable .*4004 bytes are not 1000 float32 or float16"):
        run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
    run, got = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}",
                                                      "model.num_classes=1001"])
    assert run["metrics"]["background_class"] is True
    assert_same_scores(run, got, ort_run)


def test_device_perf_files_go_into_the_run(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    folder = dumps.benchmark(tmp_path / "result" / "dumpOutput_device0", list(predictions["id"]), logits)
    (tmp_path / "result" / "perf_vision_batchsize_16_device_0.txt").write_text(
        "[e2e] throughputRate: 203.598, latency: 245582\n[data read] throughputRate: 216.393, moduleLatency: 4.62122\n"
        "[infer] throughputRate: 204.451, Interface throughputRate: 304.088, moduleLatency: 4.24378\n")
    (tmp_path / "result" / "PureInfer_perf_of_model_bs16_in_device_0.txt").write_text(
        "ave_throughputRate: 440.606samples/s, ave_latency: 2.304ms\n")
    run, _ = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
    perf = run["runtime"]["info"]["perf"]
    assert perf["benchmark_bs16"]["infer"]["Interface throughputRate"] == 304.088
    assert perf["benchmark_bs16"]["e2e"]["throughputRate"] == 203.598
    assert perf["pure_infer"] == {"ave_throughputRate": 440.606, "ave_latency": 2.304}


def test_ais_bench_summary_perf(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    folder = dumps.ais_bench_batched(tmp_path / "out" / "2026_11_22-06_00_00", list(predictions["id"]), logits)
    run, _ = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
    assert run["runtime"]["info"]["perf"]["ais_bench"]["throughput"] == 812.5


BROKEN = {
    "missing": (lambda d: next(d.glob("*_1.txt")).unlink(), "1 images have no output"),
    "truncated": (lambda d: (d / "n01440764_tench_1.bin").write_bytes(b"\0" * 3998), "3998 bytes are not 1000 float32"),
    "wrong count": (lambda d: (d / "n01440764_tench_1.txt").write_text("1 2 3"), "3 values, expected 1000, the model's class count"),
    "nan": (lambda d: (d / "n01440764_tench_1.txt").write_text(" ".join(["nan"] * 1000)), "NaN/Inf"),
    "not numbers": (lambda d: (d / "n01440764_tench_1.txt").write_text("a b c"), "not a list of numbers"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_dumps_fail_with_counts_or_count_as_wrong(ort_run, sample_root, tmp_path, case):
    _, predictions, logits = ort_run
    folder = dumps.benchmark(tmp_path / "dump", list(predictions["id"]), logits)
    if case == "truncated":
        (folder / "n01440764_tench_1.txt").unlink()
    breaker, message = BROKEN[case]
    breaker(folder)
    with pytest.raises(UserError, match=message) as err:
        run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
    assert "runtime.allow_missing=true" in str(err.value)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    run, got = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}", "runtime.allow_missing=true"])
    bad = run["dump"]["missing"] + run["dump"]["unusable"]
    assert bad == 1 and run["metrics"]["no_prediction"] == 1 and run["metrics"]["n"] == 200
    assert run["dump"]["counted_wrong"] is True and any("counted as wrong" in w for w in run["warnings"])
    assert (got["pred1"] == -1).sum() == 1


def test_duplicate_outputs_always_fail(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    folder = dumps.benchmark(tmp_path / "dump", list(predictions["id"]), logits)
    logits[:1].astype("<f4").tofile(folder / f"{predictions['id'][0]}_1.bin")
    with pytest.raises(UserError, match="more than one output"):
        run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}", "runtime.allow_missing=true"])


def test_outputs_for_other_images_are_reported(ort_run, sample_root, tmp_path):
    _, predictions, logits = ort_run
    folder = dumps.benchmark(tmp_path / "dump", [*predictions["id"], "ILSVRC2012_val_00000001"],
                             np.concatenate([logits, logits[:1]]))
    run, _ = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
    assert run["dump"]["extra"] == 1 and run["dump"]["extra_examples"] == ["ILSVRC2012_val_00000001"]


def test_dotted_file_names_keep_their_stem(tmp_path, sample_root):
    """imagenet_acc_eval.py's split('.')[0] breaks on 'a.b_1.txt'; evalkit keeps the whole stem."""
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "photo.v2.JPEG")
    (tmp_path / "labels.txt").write_text("photo.v2.JPEG 7\n")
    row = np.zeros(1000, np.float32)
    row[7] = 1
    folder = dumps.benchmark(tmp_path / "dump", ["photo.v2"], row[None])
    run, _ = run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"],
                         ["dataset=labelfile", f"dataset.root={tmp_path / 'img'}", f"dataset.labels={tmp_path / 'labels.txt'}"])
    assert run["metrics"]["top1"] == 100.0


def test_no_dump_dir_or_no_outputs_are_user_errors(tmp_path, sample_root):
    with pytest.raises(UserError, match="runtime.dump_dir=PATH"):
        run_in_process(tmp_path, sample_root, ["runtime=ascend"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no output files named"):
        run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={tmp_path / 'empty'}"])


@pytest.mark.parametrize("name,text,said", [
    ("perf_vision_batchsize_16_device_0.txt", "[e2e] throughputRate: .e\n", "not a benchmark perf file"),
    ("perf_vision_batchsize_16_device_0.txt", b"\xc3\x28 [e2e] x: 1", "not UTF-8 text"),
])
def test_a_perf_file_that_cannot_be_read_stops_the_run_before_it_scores(ort_run, sample_root, tmp_path, name, text,
                                                                        said):
    _, predictions, logits = ort_run
    folder = dumps.benchmark(tmp_path / "result" / "dumpOutput_device0", list(predictions["id"]), logits)
    path = tmp_path / "result" / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UserError, match=said):
        run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("summary,said", [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"),
                                          ("[" * 100_000 + "]" * 100_000, "nested too deeply")])
def test_a_malformed_ais_bench_summary_is_one_message(ort_run, sample_root, tmp_path, summary, said):
    _, predictions, logits = ort_run
    folder = dumps.ais_bench(tmp_path / "out" / "2026_11_22-06_00_00", list(predictions["id"]), logits, "npy")
    (folder.parent / f"{folder.name}_summary.json").write_text(summary)
    with pytest.raises(UserError, match=said):
        run_in_process(tmp_path, sample_root, ["runtime=ascend", f"runtime.dump_dir={folder}"])
