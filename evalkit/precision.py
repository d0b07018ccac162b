"""The model in the requested precision: the fp32 ONNX transformed once (fp16, int8 Q/DQ), cached by content.

A runtime asks its context for ``onnx_file()`` and gets the transformed model; the transform plug-in
(``evalkit.transforms``, named after the precision) does the work, this module chooses the
calibration images, keys the cache and records what was done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evalkit import dataset
from evalkit.cache import touch, write_sidecar
from evalkit.contract import (GROUPS, Context, PrecisionOptions, Recipe, Sample, dist_versions, file_sha256, load,
                              plugins)
from evalkit.errors import UserError


def calibration_subset(samples: list[Sample], size: int) -> list[Sample]:
    """``size`` samples taking classes in turn (first images by id of each), so every class is represented
    as soon as ``size`` reaches the number of classes. Deterministic."""
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for s in sorted(samples, key=lambda s: s.id):
        by_class[s.label].append(s)
    chosen: list[Sample] = []
    depth = 0
    while len(chosen) < size and any(len(v) > depth for v in by_class.values()):
        for label in sorted(by_class):
            if depth < len(by_class[label]) and len(chosen) < size:
                chosen.append(by_class[label][depth])
        depth += 1
    return chosen


def calibration_set(options: PrecisionOptions) -> list[Sample]:
    """Every image of ``precision.calibration``'s dataset (read as the evaluated set would be)."""
    cal = options.calibration
    reader = load(GROUPS["reader"], cal.layout)
    keys = {f.name for f in dataclasses.fields(reader.Options)}
    given = {k: v for k, v in (("root", cal.root), ("labels", cal.labels)) if v is not None}
    for key in set(given) - keys:
        raise UserError(f"precision.calibration.{key} does not apply to precision.calibration.layout={cal.layout}; "
                        "a label file goes with precision.calibration.layout=labelfile")
    return dataset.load(reader.Options(name="calibration", **given))


def content_fingerprint(samples: list[Sample], digests: list[bytes]) -> str:
    """Hash of ids, labels and image bytes (``digests``: each sample's sha256): a calibration set whose images
    change is another set.

    Each sample's own bytes (a tar member's, not its whole shard); for a plain file the same hash as before.
    """
    h = hashlib.sha256()
    for s, digest in zip(samples, digests):
        h.update(f"{s.id}\t{s.label}\t{digest.hex()}\n".encode())
    return h.hexdigest()[:16]


class Transformed:
    """A context's ``onnx_file``: the source ONNX in the requested precision; ``record`` says what was done."""

    def __init__(self, source: Callable[[], Path], options: PrecisionOptions, recipe: Recipe, cache_dir: Path,
                 evaluated: list[Sample], context_for: Callable[[list[Sample]], Context]) -> None:
        self.source, self.options, self.recipe, self.cache_dir = source, options, recipe, cache_dir
        self.evaluated, self.context_for = evaluated, context_for
        #: what run.json keeps under ``precision`` (None until the model is asked for, or for fp32)
        self.record: dict[str, Any] | None = None
        #: sha256 of each calibration image's bytes (empty for a transform without calibration)
        self.calibration_digests: list[bytes] = []

    def __call__(self) -> Path:
        src = self.source()
        name = self.options.name
        if name == "fp32" or name not in plugins(GROUPS["transform"]):
            # no transform (bf16): the runtime computes in it itself (torch autocast, OpenVINO's precision hint);
            # the core let only runtimes that list it in PRECISIONS get here
            return src
        module = load(GROUPS["transform"], name)
        calibration, samples = self._calibration() if getattr(module, "CALIBRATED", False) else (None, [])
        tools = dist_versions(module.TOOLS)
        source_sha256 = file_sha256(src)
        key = hashlib.sha256(json.dumps({
            "source": source_sha256, "precision": name, "exclude": list(self.options.exclude),
            "calibration": calibration and {k: calibration[k] for k in ("method", "images", "batch_size", "fingerprint")},
            "recipe": self.recipe.fingerprint if samples else None, "tools": tools,
        }, sort_keys=True).encode()).hexdigest()[:16]
        out = self.cache_dir / "precision" / f"{src.stem}-{name}-{key}.onnx"
        hit = out.is_file()
        if not hit:
            out.parent.mkdir(parents=True, exist_ok=True)
            what = f" calibrated on {len(samples)} images ({calibration['method']})" if samples else ""
            print(f"precision {name}: transforming {src.name}{what} (first use, cached as {out})", file=sys.stderr)
            tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
            try:
                module.apply(self.options, src, tmp, self.context_for(samples))
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
            write_sidecar(out)
        else:
            touch(out)
        self.record = {"transform": name, "exclude": list(self.options.exclude), "source_sha256": source_sha256,
                       "model": str(out), "model_sha256": file_sha256(out), "cache_hit": hit, "tools": tools,
                       "calibration": calibration}
        return out

    def _calibration(self) -> tuple[dict[str, Any], list[Sample]]:
        cal = self.options.calibration
        pool = calibration_set(self.options) if cal.root else self.evaluated
        samples = calibration_subset(pool, cal.size)
        self.calibration_digests = [hashlib.sha256(s.read()).digest() for s in samples]
        return {"layout": cal.layout, "root": cal.root, "labels": cal.labels, "method": cal.method, "size": cal.size,
                "batch_size": cal.batch_size, "images": len(samples), "classes": len({s.label for s in samples}),
                "fingerprint": content_fingerprint(samples, self.calibration_digests)}, samples

    def overlap(self, evaluated: np.ndarray) -> str | None:
        """Record how many calibration images are evaluated images too, by content (``evaluated``: the sha256 of
        each evaluated image, as the run read it): a copy under another name or folder counts. Returns the
        warning, if any overlap."""
        calibration = (self.record or {}).get("calibration")
        if calibration is None:
            return None
        seen = {row.tobytes() for row in evaluated}
        n = sum(digest in seen for digest in self.calibration_digests)
        calibration.update(overlapping_images=n, overlaps_evaluation=n > 0)
        if not n:
            return None
        how = ("no precision.calibration.root: they were drawn from the evaluated set" if not self.options.calibration.root
               else f"the same bytes, in precision.calibration.root={self.options.calibration.root}")
        return (f"{self.options.name} calibrated on {n} of the evaluated images ({how}): calibration overlaps "
                "evaluation, which flatters the score; give a separate set of images")
