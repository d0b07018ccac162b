"""The example notebook runs headless, cell by cell, and writes its figures."""

from __future__ import annotations

import os

import pytest

from .conftest import REPO

nbclient = pytest.importorskip("nbclient", reason="running the notebook needs evalkit[dev] (nbclient)")
nbformat = pytest.importorskip("nbformat")


def test_compare_frameworks_notebook(sample_root, lite0_onnx, cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("EVALKIT_CACHE", str(cache_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(REPO / "examples" / "compare_frameworks.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "examples")}}).execute()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["accuracy.png", "accuracy_vs_throughput.png", "agreement.png"]
    assert (tmp_path / "report.html").is_file()
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
