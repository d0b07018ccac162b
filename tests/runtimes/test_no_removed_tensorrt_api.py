"""No code of the repository uses a TensorRT API that TensorRT 11 removed (weak typing, implicit calibration).

The strings are built by concatenation so that this file does not match itself.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("evalkit", "runtimes", "preprocess", "benchmarks", "tests")
REMOVED = ["BuilderFlag." + "FP16", "BuilderFlag." + "INT8", "BuilderFlag." + "BF16", "I" + "Int8",
           "int8_" + "calibrator", "EXPLICIT_" + "BATCH"]


def python_files() -> list[Path]:
    me = Path(__file__).resolve()
    return [p for folder in FOLDERS for p in sorted((REPO / folder).rglob("*.py"))
            if p.resolve() != me and ".venv" not in p.parts]


def test_the_scan_sees_the_runtimes():
    assert REPO / "runtimes" / "trt.py" in python_files()


def test_no_removed_tensorrt_api_is_used():
    found = [f"{p.relative_to(REPO)}: {name}" for p in python_files()
             for name in REMOVED if name in p.read_text(encoding="utf-8", errors="replace")]
    assert not found, ("TensorRT 11 removed these (strongly typed networks and Q/DQ ONNX replace them):\n"
                       + "\n".join(found))
