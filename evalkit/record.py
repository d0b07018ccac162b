"""Run records: one directory per run, written atomically (temp dir, then rename).

    <results.dir>/<run id>/run.json         metrics, config, versions, fingerprints, reference comparison
                           predictions.csv  id, label, path, pred1..pred5, wnid, class_name (prob1..prob5 with logits) per image
                           per_class.csv    label, wnid, class_name, n, top-1, top-5 per class
                           log.txt          what evalkit and the libraries said during the run
                           logits.npy       only with results.save_logits=true
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.contract import safe_name
from evalkit.errors import UserError
from evalkit.reference import VAL_IMAGES
from evalkit.scoring import Result

#: the version of run.json this code writes; files without ``schema_version`` are version 1
SCHEMA_VERSION = 2
#: the runtime precision of a run whose runtime has no precision setting
DEFAULT_PRECISION = "fp32"
#: fields absent from the file rather than null when unset (most runs are not merged, most run the model as exported)
OMITTED_WHEN_NONE = ("merged_from", "transform")


@dataclass
class RunRecord:
    """A run's ``run.json``: the one type the results code, history, gate, compare and merge read.

    The file keeps its JSON shape (other tools read it as a dict): one key per field below, plus
    any key this version does not know (kept in ``extra``, written back as it was). Defaults for
    what older files lack live here and nowhere else (``from_dict``).
    """

    id: str = ""
    created: str = ""
    evalkit: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=lambda: {"comparable": False, "rows": []})
    timing: dict[str, Any] = field(default_factory=dict)
    dump: dict[str, Any] | None = None
    bad_images: dict[str, Any] = field(default_factory=lambda: {"count": 0, "examples": {}})
    sweep: str | None = None
    warnings: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    #: what the precision transform did (calibration set, derived model and its hash); absent: the model as exported
    transform: dict[str, Any] | None = None
    #: a merged run: the ids of the shard runs it was made from (absent from the file otherwise)
    merged_from: list[str] | None = None
    #: keys of the file this version does not know
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunRecord":
        """A run.json as read, of any schema version, brought up to the current one."""
        data = dict(data)
        version = data.pop("schema_version", 1)
        if version > SCHEMA_VERSION:
            raise UserError(f"run {data.get('id')}: run.json schema version {version} is newer than this "
                            f"evalkit reads ({SCHEMA_VERSION}); upgrade evalkit")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "schema_version"}
        run = cls(**{k: v for k, v in data.items() if k in known},
                  extra={k: v for k, v in data.items() if k not in known})
        # version 1 (before schema_version) may lack these fields of a reference row: a row without
        # "applies" was judged when its status was "ok"; one without "ref_n" was measured on the whole val set
        run.reference = {**run.reference, "rows": [
                {**row, "applies": row.get("applies", row.get("status") == "ok"), "ref_n": row.get("ref_n", VAL_IMAGES)}
                for row in run.reference.get("rows", [])]}
        return run

    def to_dict(self) -> dict[str, Any]:
        data = {"schema_version": self.schema_version}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "schema_version") or (f.name in OMITTED_WHEN_NONE and getattr(self, f.name) is None):
                continue
            data[f.name] = getattr(self, f.name)
        return {**data, **self.extra}

    @property
    def model_name(self) -> str:
        return self.model["name"]

    @property
    def runtime_name(self) -> str:
        return self.runtime["name"]

    @property
    def precision(self) -> str:
        """The requested precision (``precision=``; before it existed, TensorRT's ``runtime.precision``)."""
        return (self.config.get("precision") or {}).get("name") or self.runtime.get("precision") or DEFAULT_PRECISION

    @property
    def executed_precision(self) -> str | None:
        """What the runtime really computed in, in its words (e.g. ``fp16 weights; fp32 compute``); None: unknown."""
        return (self.runtime.get("info") or {}).get("executed_precision")

    @property
    def precision_label(self) -> str:
        """The requested precision, with what ran where that differs: ``fp16 (fp16 weights; fp32 compute)``."""
        executed = self.executed_precision
        return self.precision + (f" ({executed})" if executed and executed != self.precision else "")

    def dataset_setting(self, key: str) -> Any:
        """A ``dataset.*`` setting the run was configured with (None when unset or older than the key)."""
        return (self.config.get("dataset") or {}).get(key)

    @property
    def metric_names(self) -> list[str]:
        """The metric plug-ins the run computed (runs from before metrics were plug-ins computed top-k)."""
        return list(self.config.get("metrics", ["topk"]))

    @property
    def shard(self) -> tuple[int, int] | None:
        """(shard index, number of shards) of a shard run; None for a whole run."""
        shard = self.dataset.get("shard")
        return None if shard is None else (int(shard[0]), int(shard[1]))

    @property
    def reference_rows(self) -> list[dict[str, Any]]:
        """The reference comparison, one row per published number (with ``applies`` and ``ref_n``)."""
        return self.reference.get("rows", [])

    @property
    def applicable_references(self) -> list[dict[str, Any]]:
        """The rows the gate judges: this model's numbers, measured at the run's recipe parameters."""
        return [r for r in self.reference_rows if r.get("applies")]

#: bad images named in run.json (all of them are counted)
BAD_IMAGE_EXAMPLES = 20


def bad_images(count: int, reasons: dict[str, str]) -> dict[str, Any]:
    """run.json's ``bad_images``: how many images could not be used, and the first ones with why."""
    return {"count": count, "examples": dict(list(reasons.items())[:BAD_IMAGE_EXAMPLES])}


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


def new_run_id(model: str, runtime: str, precision: str) -> str:
    """``<stamp>-<model>-<runtime>-<precision>-<uuid>``: a folder listing tells the runs apart by what ran."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return (f"{stamp}-{safe_name(model, 60)}-{safe_name(runtime, 20)}-{safe_name(precision, 20)}-"
            f"{uuid.uuid4().hex[:6]}")


def write(results_dir: Path, run_id: str, run: RunRecord, result: Result, logits: np.ndarray | None = None,
          log: str | None = None) -> Path:
    """Write the run directory (``log``: the run's log.txt); on any failure nothing is left under ``results_dir``."""
    data = run.to_dict()
    results_dir.mkdir(parents=True, exist_ok=True)
    final = results_dir / run_id
    tmp = results_dir / f".tmp-{run_id}"
    try:
        tmp.mkdir()
        result.predictions.to_csv(tmp / "predictions.csv", index=False)
        result.per_class.to_csv(tmp / "per_class.csv", index=False, float_format="%.3f")
        if logits is not None:
            np.save(tmp / "logits.npy", logits)
        if log is not None:
            (tmp / "log.txt").write_text(log, encoding="utf-8")
        with open(tmp / "run.json", "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def load(run_dir: Path | str) -> RunRecord:
    """The run.json of a run directory; a directory without one is a user error."""
    try:
        text = (Path(run_dir) / "run.json").read_text()
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{run_dir}: not a run directory (no run.json)") from None
    return RunRecord.from_dict(json.loads(text))
