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
from evalkit.runtime import Runtime
from evalkit.scoring import Scorer


@dataclass
class Outcome:
    scorer: Scorer
    #: sha256 over every image's id, label and bytes: identifies the data actually scored
    content_fingerprint: str
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


def _ordered(samples: list[Sample], fn: Callable[[bytes], np.ndarray], workers: int, ahead: int
             ) -> Iterator[tuple[np.ndarray, bytes]]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
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
        for sample, (array, digest) in zip(samples, _ordered(samples, fn, workers, ahead=2 * batch_size + workers)):
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
