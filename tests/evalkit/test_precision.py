"""The precision group: its choices, which runtimes run what, and the class-balanced calibration subset."""

from __future__ import annotations

import pytest

from evalkit.contract import PrecisionOptions, Sample
from evalkit.errors import UserError
from evalkit.precision import calibration_subset

from ..conftest import run_cli  # noqa: TID252


def samples(per_class: dict[int, int]) -> list[Sample]:
    return [Sample(f"c{label:03d}_{i}", None, label) for label, n in per_class.items() for i in range(n)]


def test_calibration_subset_represents_every_class_first():
    pool = samples({label: 3 for label in range(10)})
    chosen = calibration_subset(pool, 10)
    assert sorted(s.label for s in chosen) == list(range(10))
    assert [s.id for s in chosen] == [f"c{label:03d}_0" for label in range(10)]
    assert calibration_subset(pool, 25) == calibration_subset(list(reversed(pool)), 25)  # deterministic
    assert len({s.label for s in calibration_subset(pool, 25)}) == 10 and len(calibration_subset(pool, 25)) == 25


def test_calibration_subset_with_fewer_images_than_asked_takes_them_all():
    pool = samples({0: 2, 5: 1})
    assert len(calibration_subset(pool, 1000)) == 3


@pytest.mark.parametrize("args,message", [
    (["precision=int4"], "unknown precision=int4; did you mean int8?"),
    (["runtime=trt_int8"], "runtime=trt_int8 was removed: use runtime=trt precision=int8"),
    (["runtime=trt_fp16"], "runtime=trt_fp16 was removed: use runtime=trt precision=fp16"),
    (["precision=bf16"], "runtime=ort cannot run precision=bf16; runtimes that can:"),
    (["precision=int8", "precision.calibration.method=kl"], "not one of minmax, entropy, percentile"),
    (["precision=int8", "precision.calibration.size=0"], "precision.calibration.size=0 is out of range"),
])
def test_bad_precision_requests_exit_2_with_the_fix(tmp_path, args, message):
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    if args == ["precision=bf16"]:
        assert "torch" in out.stderr.rsplit("runtimes that can:", 1)[1]
    assert not (tmp_path / "results").exists()


def test_a_label_file_calibration_set_needs_the_labelfile_layout(tmp_path):
    from evalkit.precision import calibration_set

    options = PrecisionOptions(name="int8")
    options.calibration.root, options.calibration.labels = str(tmp_path), str(tmp_path / "val.txt")
    with pytest.raises(UserError, match="precision.calibration.layout=labelfile"):
        calibration_set(options)
