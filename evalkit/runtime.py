"""The runtime contract: what evalkit asks of every adapter in ``runtimes/``.

An adapter module defines ``Options`` (a dataclass whose ``name`` field is the module
name) and ``open(options, context) -> Runtime``. It imports its heavy dependencies
inside ``open`` so that ``import evalkit`` and config validation stay light.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.config import ModelConfig
from evalkit.dataset import Sample
from evalkit.errors import UserError
from evalkit.preprocess import Recipe


@dataclass
class Context:
    """What a runtime may need besides its own options."""

    model: ModelConfig
    recipe: Recipe
    cache_dir: Path
    #: the run's samples (an int8 calibrator draws its subset from them)
    samples: list[Sample] = field(default_factory=list)
    #: the preprocessed-tensor cache folder (None: no cache), for runtimes that prepare images themselves
    tensor_cache: Path | None = None


class Runtime(abc.ABC):
    """An online runtime: float32 NCHW batches in, logits [N, C] out."""

    #: (C, H, W) the model takes; None where a dimension is not fixed in the model.
    input_shape: tuple[int | None, ...] | None = None
    #: output class count when the model declares it, else None (checked on the first batch).
    num_outputs: int | None = None
    #: the batch size the model is fixed to, or None for a dynamic batch.
    fixed_batch: int | None = None
    #: key/value metadata stored in the model file (the export writes the recipe there).
    metadata: dict[str, str] = {}

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a batch whose size the model accepts."""

    def info(self) -> dict[str, Any]:
        """Versions and settings worth recording in the run."""
        return {}

    def close(self) -> None:
        """Release sessions and device memory."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits for any batch up to the model's size: a short last batch is padded, then trimmed."""
        n = len(batch)
        if self.fixed_batch is not None and n != self.fixed_batch:
            if n > self.fixed_batch:
                raise AssertionError(f"batch of {n} for a model fixed to {self.fixed_batch}")
            pad = np.zeros((self.fixed_batch - n, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, pad])
        return np.asarray(self.infer(batch))[:n]


class BadOutput(Exception):
    """An output file that cannot be used (truncated, wrong element count, unparsable): names why."""


class OfflineRuntime(abc.ABC):
    """Outputs a device already wrote (vendor tools' dumps), matched to samples by file name.

    evalkit does the accounting (missing, extra, duplicate, unusable outputs) the same
    way for every vendor; an adapter only says which outputs exist and how to read one.
    """

    #: images without a usable output count as wrong instead of failing the run
    allow_missing: bool = False

    @abc.abstractmethod
    def entries(self) -> dict[str, list[Any]]:
        """Sample id (image file stem) -> the outputs found for it (normally one)."""

    @abc.abstractmethod
    def read(self, entry: Any) -> np.ndarray:
        """One image's output: float scores over the classes, or integer class indices best first.

        Raises ``BadOutput`` for a file that cannot be used.
        """

    def info(self) -> dict[str, Any]:
        """Dump format, folder, and the device's own throughput/latency figures where it wrote them."""
        return {}

    def close(self) -> None:
        """Nothing to release by default."""


def open_runtime(options: Any, context: Context) -> Runtime | OfflineRuntime:
    """Import ``runtimes.<options.name>`` and open it."""
    try:
        module = importlib.import_module(f"evalkit.runtimes.{options.name}")
    except ModuleNotFoundError as e:
        if e.name != f"evalkit.runtimes.{options.name}":
            raise
        raise UserError(f"unknown runtime {options.name!r}") from e
    return module.open(options, context)
