"""Run records: one directory per run, written atomically (temp dir, then rename).

    <results.dir>/<run id>/run.json         metrics, config, versions, fingerprints, reference comparison
                           predictions.csv  id, label, pred1..pred5 for every image
                           per_class.csv    n, top-1, top-5 per class
                           logits.npy       only with results.save_logits=true
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.scoring import Result

#: distributions whose versions are recorded with every run when installed
RECORDED_DISTRIBUTIONS = ("evalkit", "numpy", "pillow", "pandas", "hydra-core", "onnxruntime", "onnx",
                          "torch", "torchvision", "timm", "opencv-python-headless", "opencv-python", "tensorrt")


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for d in RECORDED_DISTRIBUTIONS:
        try:
            found[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            pass
    return found


def new_run_id(model: str, runtime: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{model.replace('/', '_')}-{runtime}-{uuid.uuid4().hex[:6]}"


def write(results_dir: Path, run_id: str, run: dict[str, Any], result: Result,
          logits: np.ndarray | None = None) -> Path:
    """Write the run directory; on any failure nothing is left under ``results_dir``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    final = results_dir / run_id
    tmp = results_dir / f".tmp-{run_id}"
    try:
        tmp.mkdir()
        result.predictions.to_csv(tmp / "predictions.csv", index=False)
        result.per_class.to_csv(tmp / "per_class.csv", index=False, float_format="%.3f")
        if logits is not None:
            np.save(tmp / "logits.npy", logits)
        with open(tmp / "run.json", "w") as f:
            json.dump(run, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def load(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "run.json").read_text())
