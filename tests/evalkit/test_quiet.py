"""Quiet by default, complete on request: libraries' chatter goes to the run's log.txt, evalkit's lines to both."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from evalkit import progress, runlog
from evalkit.contract import library_output

from ..conftest import run_cli  # noqa: TID252


def test_libraries_speak_to_the_log_and_evalkit_to_the_terminal_and_the_log(capfd):
    chatty = logging.getLogger("chatty_library")
    own = logging.StreamHandler()  # as huggingface_hub adds one to its logger
    chatty.addHandler(own)
    root_handlers = logging.getLogger().handlers[:]
    try:
        with runlog.capture() as log:
            print("evalkit's own line")
            chatty.warning("a library's warning")
            logging.info("a library's note through the root logger")
            warnings.warn("a library's deprecation", DeprecationWarning)
            with library_output("printing_library"):
                print("printed by a library")
                os.write(2, b"written by its C code\n")
            said = log.text()
        assert logging.getLogger().handlers == root_handlers and chatty.handlers == [own]  # as they were
    finally:
        chatty.removeHandler(own)
    out, err = capfd.readouterr()
    assert out == "evalkit's own line\n" and err == "", (out, err)
    assert "evalkit's own line" in said and "WARNING chatty_library: a library's warning" in said
    assert "INFO root: a library's note through the root logger" in said and "a library's deprecation" in said
    assert "INFO printing_library: printed by a library" in said
    assert "INFO printing_library: written by its C code" in said


def test_progress_off_a_terminal_is_a_few_whole_lines(capsys):
    assert list(progress.bar(range(95), unit="img")) == list(range(95))
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 10 and err.splitlines()[-1].startswith("progress: 95/95 img (100 %")


def test_an_int8_run_prints_nothing_of_the_quantizer_and_logs_it(tmp_path, lite0_onnx, sample_root, calibration_root):
    pytest.importorskip("onnxruntime", reason="int8 quantizes with ONNX Runtime: evalkit[ort]")
    out = run_cli("precision=int8", f"precision.calibration.root={calibration_root}",
                  "precision.calibration.size=7",  # a model of its own: the quantizer runs here
                  "dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=8",
                  f"results.dir={tmp_path / 'results'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Increased scale" not in out.stdout + out.stderr
    (log,) = (tmp_path / "results").glob("*/log.txt")
    said = log.read_text()
    assert "Increased scale" in said  # what ONNX Runtime's quantizer said of this model and calibration set
    assert "precision int8: transforming" in out.stderr and "precision int8: transforming" in said
    assert "precision: int8 (int8 Q/DQ simulated in fp32)" in out.stdout and "precision: int8 (int8 Q/DQ" in said
