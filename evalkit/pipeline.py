"""Samples -> recipe -> batches -> runtime -> scorer.

Online runtimes: worker processes decode and prepare images into the tensor cache while
the runtime scores finished batches in sample order; a helper thread normalises the next
batch during inference. Offline runtimes: the device's outputs, matched by file name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from evalkit.checkpoint import Checkpoint
from evalkit.dataset import Sample
from evalkit.errors import UserError
from evalkit.runtime import BadOutput, OfflineRuntime, Runtime
from evalkit.scoring import K, Scorer
from evalkit.tensorcache import TensorCache
from evalkit.workers import default_workers
from evalkit.workers import pool as workers_pool
from evalkit.preprocess import Recipe


@dataclass
class Outcome:
    scorer: Scorer
    #: sha256 of each image file, in sample order (None where the images were not read:
    #: offline runtimes score the device's outputs)
    digests: np.ndarray | None
    logits: np.ndarray | None
    #: images that could not be used and were counted wrong (dataset.bad_images=count_wrong): id -> reason
    bad: dict[str, str] = field(default_factory=dict)


def content_fingerprint(samples: list[Sample], digests: np.ndarray) -> str:
    """sha256 over every image's id, label and bytes: identifies the data actually scored."""
    content = hashlib.sha256()
    for s, digest in zip(samples, digests):
        content.update(f"{s.id}\t{s.label}\t".encode() + digest.tobytes())
    return content.hexdigest()[:16]


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


def _make_rows(data_file: str, row_bytes: int, shape: tuple[int, ...], pixels_fn: Callable[[bytes], np.ndarray],
               items: list[tuple[int, str]], tolerate: bool) -> list[tuple[int, Any, Any]]:
    """In a worker process: decode and prepare images, write their pixels into the cache file.

    Returns (index, file stat, sha256) per image, or (index, None, reason) for an unusable image
    when ``tolerate``; otherwise an unusable image raises.
    """
    fd = os.open(data_file, os.O_WRONLY)
    try:
        made = []
        for index, path in items:
            try:
                stat = TensorCache.file_stat(Path(path))
                data = Path(path).read_bytes()
                pixels = np.ascontiguousarray(pixels_fn(data), dtype=np.uint8)
            except (OSError, UserError) as e:
                reason = f"cannot read: {e.strerror}" if isinstance(e, OSError) else str(e)
                if tolerate:
                    made.append((index, None, reason))
                    continue
                raise UserError(f"{path}: {reason}; remove or replace the file, "
                                "or set dataset.bad_images=count_wrong") from e
            if pixels.shape != shape:
                raise AssertionError(f"recipe made {pixels.shape} for {path}, expected {shape}")
            os.pwrite(fd, pixels.tobytes(), index * row_bytes)
            made.append((index, stat, hashlib.sha256(data).digest()))
        return made
    finally:
        os.close(fd)


class Prepared:
    """The recipe's arrays of ``samples``, made by worker processes through the tensor cache.

    Rows already in the cache are read, not decoded; ``cache_dir`` None uses a temporary cache
    removed on close. Used by the evaluation, the device-input exporters and the int8 calibrator.
    """

    def __init__(self, samples: list[Sample], recipe: Recipe, cache_dir: Path | None, workers: int = 0,
                 bad_images: str = "fail", chunk: int = 8) -> None:
        self.recipe, self.samples = recipe, samples
        #: images that could not be used (bad_images=count_wrong): index -> reason
        self.bad: dict[int, str] = {}
        self.temporary = tempfile.TemporaryDirectory(prefix="evalkit-") if cache_dir is None else None
        self.cache = TensorCache(Path(self.temporary.name) if self.temporary else cache_dir, recipe, samples)
        todo = self.cache.missing(samples)
        self.pool = workers_pool(workers) if todo else None
        self.pending: deque = deque()
        for start in range(0, len(todo), chunk):
            items = [(i, str(samples[i].path)) for i in todo[start:start + chunk]]
            self.pending.append((items[0][0], self.pool.submit(
                _make_rows, str(self.cache.data), self.cache.row_bytes, self.cache.shape, recipe.pixels_fn, items,
                bad_images == "count_wrong")))
        self.reader = os.open(self.cache.data, os.O_RDONLY)

    def batch(self, lo: int, hi: int) -> np.ndarray:
        """The normalised arrays of samples lo..hi-1 (zeros for unusable images), once the workers made them."""
        # chunks are in sample order: every chunk that starts before hi may hold a row of this batch
        while self.pending and self.pending[0][0] < hi:
            for index, stat, digest in self.pending.popleft()[1].result():
                if stat is None:
                    self.bad[index] = digest
                else:
                    self.cache.mark(index, stat, digest)
        blank = np.zeros(self.cache.shape, np.uint8)
        return np.stack([self.recipe.normalize(blank if i in self.bad else self.cache.read(self.reader, i))
                         for i in range(lo, hi)])

    def batches(self, size: int) -> Iterator[np.ndarray]:
        for lo in range(0, len(self.samples), size):
            yield self.batch(lo, min(lo + size, len(self.samples)))

    def close(self) -> None:
        os.close(self.reader)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.temporary:
            self.temporary.cleanup()
        else:
            self.cache.save()

    def __enter__(self) -> "Prepared":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate(samples: list[Sample], recipe: Recipe, runtime: Runtime, batch_size: int, num_classes: int,
             workers: int = 0, progress: bool = True, keep_logits: bool = False,
             cache_dir: Path | None = None, bad_images: str = "fail", checkpoint: Checkpoint | None = None) -> Outcome:
    """Decode in worker processes into the tensor cache, while the runtime scores finished batches in order.

    A helper thread normalises the next batch during inference. ``bad_images`` "count_wrong" scores an
    undecodable image as wrong instead of failing the run. ``checkpoint`` receives every finished batch.
    Worker processes start from a fork server: a script that calls this needs the usual
    ``if __name__ == "__main__":`` guard (notebooks and ``python -m evalkit`` do not).
    """
    workers = workers or default_workers()
    scorer, kept = Scorer(num_classes), []
    bar = tqdm(total=len(samples), unit="img", disable=not progress, dynamic_ncols=True)
    bounds = [(lo, min(lo + batch_size, len(samples))) for lo in range(0, len(samples), batch_size)]
    prepared = Prepared(samples, recipe, cache_dir, workers, bad_images, chunk=max(1, min(8, batch_size // workers or 1)))
    try:
        with ThreadPoolExecutor(1) as helper:
            upcoming = helper.submit(prepared.batch, *bounds[0]) if bounds else None
            for k, (lo, hi) in enumerate(bounds):
                batch = upcoming.result()
                upcoming = helper.submit(prepared.batch, *bounds[k + 1]) if k + 1 < len(bounds) else None
                logits = runtime(batch)
                ids = [s.id for s in samples[lo:hi]]
                invalid = np.array([i in prepared.bad for i in range(lo, hi)])
                top = scorer.update(ids, np.array([s.label for s in samples[lo:hi]]), logits, invalid)
                if keep_logits:
                    kept.append(np.asarray(logits, dtype=np.float32))
                if checkpoint is not None:
                    checkpoint.add(ids, top, prepared.cache.digest[lo:hi].copy(), kept[-1] if keep_logits else None,
                                   [prepared.bad.get(i, "") for i in range(lo, hi)])
                bar.update(hi - lo)
    finally:
        bar.close()
        if checkpoint is not None:
            checkpoint.flush()
        prepared.close()
    return Outcome(scorer, prepared.cache.digest.copy(), np.concatenate(kept) if keep_logits and kept else None,
                   {samples[i].id: reason for i, reason in sorted(prepared.bad.items())})


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
