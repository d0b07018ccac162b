"""The prepared-tensor source: the recipe's arrays of a sample list, in sample order.

``Prepared`` makes them in worker processes through the tensor cache (the evaluation, the
device-input exporters and the int8 calibrator read batches from it); ``ordered`` computes
them in threads, a few samples ahead, for a caller that wants one array at a time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from evalkit.contract import Recipe
from evalkit.dataset import Sample
from evalkit.errors import UserError
from evalkit.tensorcache import TensorCache, row_checksum, write_row
from evalkit.workers import default_workers
from evalkit.workers import pool as workers_pool


def _where(sample: Sample) -> str:
    """The sample's file, or its archive and member id, for messages."""
    return str(sample.path) if sample.offset is None else f"{sample.path} (member {sample.id})"


def _reason(e: OSError) -> str:
    """An OSError's own words: the system's for a file, ``Sample.read``'s for a truncated archive."""
    return e.strerror or str(e)


def _load(sample: Sample, fn: Callable[[bytes], np.ndarray]) -> tuple[np.ndarray, bytes]:
    try:
        data = sample.read()
    except OSError as e:
        raise UserError(f"cannot read {_where(sample)}: {_reason(e)}") from e
    try:
        array = fn(data)
    except UserError as e:
        raise UserError(f"{_where(sample)}: {e}; remove or replace the image") from e
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
               items: list[tuple[int, Sample]], tolerate: bool) -> list[tuple[int, Any, Any, Any]]:
    """In a worker process: decode and prepare images, write their pixels into the cache file.

    Returns (index, file stat, sha256, row checksum) per image, or (index, None, reason, None) for an
    unusable image when ``tolerate``; otherwise an unusable image raises. The stat is the archive's for a
    member. A row that cannot be written whole raises: none of this call's rows is marked done.
    """
    fd = os.open(data_file, os.O_WRONLY)
    try:
        made = []
        for index, sample in items:
            try:
                stat = TensorCache.file_stat(sample.path)
                data = sample.read()
                pixels = np.ascontiguousarray(pixels_fn(data), dtype=np.uint8)
            except (OSError, UserError) as e:
                reason = f"cannot read: {_reason(e)}" if isinstance(e, OSError) else str(e)
                if tolerate:
                    made.append((index, None, reason, None))
                    continue
                raise UserError(f"{_where(sample)}: {reason}; remove or replace the image, "
                                "or set dataset.bad_images=count_wrong") from e
            if pixels.shape != shape:
                raise AssertionError(f"recipe made {pixels.shape} for {_where(sample)}, expected {shape}")
            row = pixels.tobytes()
            try:
                write_row(fd, row, index * row_bytes)
            except OSError as e:
                raise UserError(f"cannot write the tensor cache {data_file}: {_reason(e)}; free space there, "
                                "set cache.dir to another disk, or cache.enabled=false") from e
            made.append((index, stat, hashlib.sha256(data).digest(), row_checksum(row)))
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
        self.tolerate = bad_images == "count_wrong"
        #: images that could not be used (bad_images=count_wrong): index -> reason
        self.bad: dict[int, str] = {}
        self.temporary = tempfile.TemporaryDirectory(prefix="evalkit-") if cache_dir is None else None
        self.cache = TensorCache(Path(self.temporary.name) if self.temporary else cache_dir, recipe, samples)
        todo = self.cache.missing(samples)
        self.pool = workers_pool(workers) if todo else None
        self.pending: deque = deque()
        for start in range(0, len(todo), chunk):
            items = [(i, samples[i]) for i in todo[start:start + chunk]]
            self.pending.append((items[0][0], self.pool.submit(
                _make_rows, str(self.cache.data), self.cache.row_bytes, self.cache.shape, recipe.pixels_fn, items,
                self.tolerate)))
        self.reader = os.open(self.cache.data, os.O_RDONLY)

    def batch(self, lo: int, hi: int, normalize: bool = True) -> np.ndarray:
        """The normalised arrays of samples lo..hi-1 (zeros for unusable images), once the workers made them;
        with ``normalize`` false, their uint8 pixels (for a runtime that normalises on its device)."""
        # chunks are in sample order: every chunk that starts before hi may hold a row of this batch
        while self.pending and self.pending[0][0] < hi:
            self._take(self.pending.popleft()[1].result())
        rows = [self._row(i) for i in range(lo, hi)]
        return np.stack([self.recipe.normalize(row) for row in rows] if normalize else rows)

    def _take(self, made: list[tuple[int, Any, Any, Any]]) -> None:
        """Record rows a ``_make_rows`` call wrote (or the images it could not use)."""
        for index, stat, digest, check in made:
            if stat is None:
                self.bad[index] = digest
            else:
                self.cache.mark(index, stat, digest, check)

    def _row(self, i: int) -> np.ndarray:
        """Row i, verified; one that fails verification is made again here, from its image."""
        if i in self.bad:
            return np.zeros(self.cache.shape, np.uint8)
        row = self.cache.read(self.reader, i)
        if row is not None:
            return row
        self._take(_make_rows(str(self.cache.data), self.cache.row_bytes, self.cache.shape, self.recipe.pixels_fn,
                              [(i, self.samples[i])], self.tolerate))
        if i in self.bad:
            return np.zeros(self.cache.shape, np.uint8)
        row = self.cache.read(self.reader, i)
        if row is None:
            raise UserError(f"tensor cache {self.cache.data}: row {i} reads back other than it was written; "
                            "check that disk, or set cache.enabled=false")
        return row

    @property
    def repaired(self) -> int:
        """Rows the cache held marked done that failed verification and were made again."""
        return self.cache.repaired

    @property
    def digest(self) -> np.ndarray:
        """sha256 of each sample's file, in sample order (zeros until made)."""
        return self.cache.digest

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


def _read(sample: Sample) -> bytes | str:
    """The file's bytes, or why it cannot be read."""
    try:
        return sample.read()
    except OSError as e:
        return f"cannot read: {_reason(e)}"


class DeviceDecoded:
    """``dataset.decode=gpu``: each batch's files read in threads, then decoded and prepared on ``device`` by the
    recipe (``Recipe.pixels_torch``). No tensor cache: these pixels are close to the recipe's own, not equal."""

    def __init__(self, samples: list[Sample], recipe: Recipe, device: str, workers: int = 0,
                 bad_images: str = "fail") -> None:
        self.samples, self.recipe, self.device = samples, recipe, device
        self.tolerate = bad_images == "count_wrong"
        #: images that could not be used (bad_images=count_wrong): index -> reason
        self.bad: dict[int, str] = {}
        self.digest = np.zeros((len(samples), 32), np.uint8)
        self.pool = ThreadPoolExecutor(max_workers=workers or default_workers())

    def batch(self, lo: int, hi: int, normalize: bool = False) -> Any:
        """The uint8 NHWC torch batch of samples lo..hi-1 on the device (zeros for unusable images)."""
        assert not normalize, "a GPU-decoded batch is normalised by the runtime"
        read = list(self.pool.map(_read, self.samples[lo:hi]))
        # a file that cannot be read goes as no bytes: its row is zeros, like an image that does not decode
        batch, failed = self.recipe.pixels_torch([d if isinstance(d, bytes) else b"" for d in read], self.device)
        problems = {**failed, **{i: d for i, d in enumerate(read) if isinstance(d, str)}}
        for i, reason in sorted(problems.items()):
            if not self.tolerate:
                raise UserError(f"{_where(self.samples[lo + i])}: {reason}; remove or replace the image, "
                                "or set dataset.bad_images=count_wrong")
            self.bad[lo + i] = reason
        for i, data in enumerate(read):
            if i not in problems:
                self.digest[lo + i] = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
