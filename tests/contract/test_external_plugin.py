"""A runtime and a metric from another distribution, found by their entry points alone: ``runtime=myrt
metrics=[topk,seen]`` with no change to evalkit.

The plug-in lives in tmp_path with a hand-made ``.dist-info`` (METADATA + entry_points.txt) on PYTHONPATH
of the subprocess, so the test environment itself is not modified.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import REPO, run_cli, tiny_onnx  # noqa: TID252
from ..evalkit.test_cli import imagefolder  # noqa: TID252

PLUGIN = '''
"""A numpy-only runtime: logits are a fixed linear map of each image's mean pixel per channel."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evalkit.contract import Context, Runtime, file_sha256
from evalkit.errors import UserError


@dataclass
class Options:
    name: str = "myrt"
    batch_size: int = 4
    scale: float = 1.0


class MyRuntime(Runtime):
    def __init__(self, options: Options, context: Context) -> None:
        self.input_shape = context.recipe.output_shape
        self.num_outputs = len(context.classes)
        self.model_file = context.onnx_file()
        self.weights = np.random.default_rng(0).standard_normal((3, self.num_outputs)).astype(np.float32)
        self.weights *= options.scale
        self.closed = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return batch.mean(axis=(2, 3)) @ self.weights

    def info(self) -> dict[str, Any]:
        return {"plugin": "myrt", "model_sha256": file_sha256(self.model_file)}

    def close(self) -> None:
        self.closed += 1


def open(options: Options, context: Context) -> MyRuntime:
    if options.scale <= 0:
        raise UserError("runtime.scale must be > 0")
    return MyRuntime(options, context)
'''


METRIC = '''
"""How many images reached the metric with logits, and the mean top logit over them."""
from __future__ import annotations

import numpy as np

from evalkit.contract import Classes, DatasetOptions, Scored


class Seen:
    def __init__(self) -> None:
        self.rows, self.total = 0, 0.0

    def update(self, batch: Scored) -> None:
        if batch.logits is not None:
            self.rows += len(batch.logits)
            self.total += float(batch.logits.max(axis=1).sum())

    def result(self) -> dict:
        return {"logit_rows": self.rows, "mean_top_logit": self.total / self.rows if self.rows else None}


def open(classes: Classes, dataset: DatasetOptions) -> Seen:
    return Seen()
'''


def make_plugin(folder: Path) -> Path:
    folder.mkdir()
    (folder / "myrt_plugin.py").write_text(PLUGIN)
    (folder / "seen_metric.py").write_text(METRIC)
    info = folder / "myrt_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myrt-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[evalkit.runtimes]\nmyrt = myrt_plugin\n\n[evalkit.metrics]\nseen = seen_metric\n")
    return folder


def test_a_third_party_runtime_and_metric_are_selectable_by_their_entry_point_names(tmp_path):
    plugin = make_plugin(tmp_path / "plugin")
    root = imagefolder(tmp_path, n=3)
    onnx = tiny_onnx(tmp_path / "m.onnx")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin), str(REPO)]))
    out = subprocess.run([sys.executable, "-m", "evalkit", "runtime=myrt", "runtime.scale=2", f"model.onnx={onnx}",
                          "dataset=imagefolder", f"dataset.root={root}", f"results.dir={tmp_path / 'results'}",
                          "metrics=[topk,seen]", "progress=false"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    run = json.loads(next((tmp_path / "results").glob("*/run.json")).read_text())
    assert run["runtime"]["name"] == "myrt" and run["runtime"]["scale"] == 2.0
    assert run["runtime"]["info"]["plugin"] == "myrt" and run["runtime"]["batch_size"] == 4
    assert run["metrics"]["n"] == 3 and "top1" in run["metrics"]
    assert run["metrics"]["logit_rows"] == 3 and run["metrics"]["mean_top_logit"] is not None

    # its Options are validated like a built-in's: a misspelt key names the valid ones
    bad = subprocess.run([sys.executable, "-m", "evalkit", "runtime=myrt", "runtime.scal=2", f"model.onnx={onnx}",
                          "dataset=imagefolder", f"dataset.root={root}", "progress=false"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "runtime.scale" in bad.stderr, bad.stderr


@pytest.mark.parametrize("override,name", [("runtime=myrt", "myrt"), ("metrics=[topk,seen]", "seen")])
def test_without_the_plugin_the_name_is_unknown(tmp_path, override, name):
    root = imagefolder(tmp_path, n=1)
    out = run_cli(override, "dataset=imagefolder", f"dataset.root={root}", cwd=tmp_path)
    assert out.returncode == 2 and name in out.stderr, out.stderr
    assert "choices:" in out.stderr or "valid:" in out.stderr  # a config group's choices, or a metric's names


def test_the_plugin_passes_the_shared_contract_checks(tmp_path):
    plugin = make_plugin(tmp_path / "plugin")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin), str(REPO)]))
    code = textwrap.dedent("""
        import sys
        from evalkit.contract import GROUPS, load, plugins
        assert "myrt" in plugins(GROUPS["runtime"])
        assert load(GROUPS["runtime"], "myrt").Options().name == "myrt"
        assert "seen" in plugins(GROUPS["metric"])
        print([m for m in ("torch", "tensorrt", "onnxruntime", "cv2") if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
