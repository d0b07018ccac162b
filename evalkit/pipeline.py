"""Samples -> recipe -> batches -> runtime -> scorer, with decoding in a thread pool.

PIL releases the GIL while it decodes and resamples, so threads overlap image work with
inference; results stay in sample order and at most a few batches are in flight.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from evalkit.dataset import Sample
from evalkit.errors import UserError
from evalkit.runtime import BadOutput, OfflineRuntime, Runtime
from evalkit.scoring import K, Scorer


@dataclass
class Outcome:
    scorer: Scorer
    #: sha256 over every image's id, label and bytes: identifies the data actually scored
    #: (None where the images were not read: offline runtimes score the device's outputs)
    content_fingerprint: str | None
    logits: np.ndarray | None


def _load(sample: Sample, fn: Callable[[bytes], np.ndarray]) -> tuple[np.ndarray, bytes]:
    try:
        data = sample.path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {sample.path}: {e.strerror}") from e
    try:
        array = fn(data)
    except UserError as e:
        raise UserError(f"{sample.path}: {e}; remove or replace the file") from e
    return array, hashlib.sha256(data).digest()


def ordered(samples: list[Sample], fn: Callable[[bytes], np.ndarray], workers: int = 0, ahead: int = 64
            ) -> Iterator[tuple[np.ndarray, bytes]]:
    """(array, sha256 of the file) for each sample, in order, computed ``ahead`` samples in advance."""
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        pending: deque = deque()
        it = iter(samples)
        for s in it:
            pending.append(pool.submit(_load, s, fn))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def evaluate(samples: list[Sample], fn: Callable[[bytes], np.ndarray], runtime: Runtime, batch_size: int,
             num_classes: int, workers: int = 0, progress: bool = True, keep_logits: bool = False) -> Outcome:
    """Run every sample through ``fn`` and ``runtime`` and score it."""
    workers = workers or default_workers()
    scorer = Scorer(num_classes)
    content = hashlib.sha256()
    kept: list[np.ndarray] = []
    arrays: list[np.ndarray] = []
    batch: list[Sample] = []
    bar = tqdm(total=len(samples), unit="img", disable=not progress, dynamic_ncols=True)

    def flush() -> None:
        logits = runtime(np.stack(arrays))
        scorer.update([s.id for s in batch], np.array([s.label for s in batch]), logits)
        if keep_logits:
            kept.append(np.asarray(logits, dtype=np.float32))
        bar.update(len(batch))
        arrays.clear()
        batch.clear()

    try:
        for sample, (array, digest) in zip(samples, ordered(samples, fn, workers, ahead=2 * batch_size + workers)):
            content.update(f"{sample.id}\t{sample.label}\t".encode() + digest)
            arrays.append(array)
            batch.append(sample)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    finally:
        bar.close()
    return Outcome(scorer, content.hexdigest()[:16], np.concatenate(kept) if keep_logits else None)


@dataclass
class DumpReport:
    """What the device's outputs held, against the dataset: every problem by count and example names."""

    outputs: int
    missing: list[str]
    extra: list[str]
    unusable: dict[str, str]
    counted_wrong: bool

    def record(self, examples: int = 5) -> dict:
        return {"outputs": self.outputs, "missing": len(self.missing), "missing_examples": self.missing[:examples],
                "extra": len(self.extra), "extra_examples": self.extra[:examples],
                "unusable": len(self.unusable), "unusable_examples": dict(list(self.unusable.items())[:examples]),
                "counted_wrong": self.counted_wrong}

    def problems(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} images have no output (e.g. {', '.join(self.missing[:3])})")
        if self.unusable:
            parts.append(f"{len(self.unusable)} outputs are unusable (e.g. " + "; ".join(
                f"{k}: {v}" for k, v in list(self.unusable.items())[:3]) + ")")
        return "; ".join(parts)


def _check_scores(scores: np.ndarray, num_classes: int) -> None:
    if scores.size not in (num_classes, num_classes + 1):
        raise BadOutput(f"{scores.size} values, expected {num_classes} or {num_classes + 1}")
    if not np.isfinite(scores).all():
        raise BadOutput("NaN/Inf values")


def evaluate_offline(samples: list[Sample], runtime: OfflineRuntime, num_classes: int,
                     progress: bool = True) -> tuple[Scorer, DumpReport]:
    """Score the outputs a device wrote, each matched to its image by file name, never by position."""
    entries = runtime.entries()
    wanted = {s.id for s in samples}
    duplicate = {i: v for i, v in entries.items() if i in wanted and len(v) > 1}
    if duplicate:
        first = next(iter(duplicate))
        raise UserError(f"{len(duplicate)} images have more than one output (e.g. {first}: "
                        f"{', '.join(map(str, duplicate[first]))}); keep one dump per image, or set runtime.format")
    scorer = Scorer(num_classes)
    missing, unusable = [], {}
    width = None
    batch: list[tuple[Sample, np.ndarray]] = []

    def flush() -> None:
        scored = [(s, o) for s, o in batch if o.dtype.kind == "f"]
        ranked = [(s, o) for s, o in batch if o.dtype.kind != "f"]
        if scored:
            scorer.update([s.id for s, _ in scored], np.array([s.label for s, _ in scored]), np.stack([o for _, o in scored]))
        if ranked:
            scorer.update_topk([s.id for s, _ in ranked], np.array([s.label for s, _ in ranked]),
                               np.stack([np.append(o[:K], [-1] * K)[:K] for _, o in ranked]))
        batch.clear()

    for sample in tqdm(samples, unit="img", disable=not progress, dynamic_ncols=True):
        output = None
        if sample.id not in entries:
            missing.append(sample.id)
        else:
            try:
                output = runtime.read(entries[sample.id][0])
                if output.dtype.kind == "f":
                    output = output.astype(np.float32).ravel()
                    _check_scores(output, num_classes)
                    width = width or output.size
                    if output.size != width:
                        raise BadOutput(f"{output.size} values where the other outputs have {width}")
            except BadOutput as e:
                unusable[sample.id] = str(e)
                output = None
        batch.append((sample, output if output is not None else np.full(K, -1, np.int32)))
        if len(batch) == 256:
            flush()
    if batch:
        flush()
    report = DumpReport(sum(len(v) for v in entries.values()), missing, sorted(set(entries) - wanted),
                        unusable, runtime.allow_missing)
    if (missing or unusable) and not runtime.allow_missing:
        raise UserError(f"{report.problems()}; fix the dump, or set runtime.allow_missing=true to count them as wrong")
    return scorer, report
