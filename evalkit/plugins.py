"""The core's side of the plug-in contract: plug-in lookup by entry point, and the Context's services.

Plug-ins see only ``evalkit.contract``; this module binds the core's functions (export, tensor
cache, ordered decoding, atomic folder writes, the class list) into the ``Context`` they receive.
"""

from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

import numpy as np
from tqdm import tqdm

from evalkit.classes import imagenet1k
from evalkit.contract import GROUPS, Context, OfflineRuntime, Recipe, Runtime, Sample, load
from evalkit.errors import UserError
from evalkit.export import load_torch_model, onnx_file
from evalkit.prepare import Prepared, ordered


def runtime_module(name: str) -> ModuleType:
    """The runtime plug-in registered as ``name`` (entry-point group ``evalkit.runtimes``)."""
    return load(GROUPS["runtime"], name)


def open_runtime(options: Any, context: Context) -> Runtime | OfflineRuntime:
    """Open the runtime ``options.name`` names."""
    return runtime_module(options.name).open(options, context)


def write_each(samples: list[Sample], arrays: Iterable[np.ndarray], output: Path,
               save: Callable[[Path, Sample, np.ndarray], Path], progress: bool = True) -> list[Path]:
    """``save`` each sample's array under a temporary folder renamed to ``output`` at the end.

    ``save(folder, sample, array)`` writes one file and returns its path relative to the folder.
    Returns the final paths, in sample order. Nothing is left behind on failure.
    """
    if output.exists():
        raise UserError(f"output={output} already exists; choose a new folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".tmp-{output.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    written = []
    try:
        for sample, array in tqdm(zip(samples, arrays), total=len(samples), unit="img",
                                  disable=not progress, dynamic_ncols=True):
            written.append(output.resolve() / save(tmp, sample, array))
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def make_context(model: Any, recipe: Recipe, cache_dir: Path, samples: list[Sample] | None = None,
                 tensor_cache: Path | None = None) -> Context:
    """The Context a plug-in receives: the data, and the core's services bound to it."""
    return Context(
        model=model, recipe=recipe, cache_dir=cache_dir, samples=list(samples or []), tensor_cache=tensor_cache,
        classes=imagenet1k(),
        onnx_file=partial(onnx_file, model, recipe, cache_dir),
        torch_model=partial(load_torch_model, model),
        prepared=partial(Prepared, recipe=recipe, cache_dir=tensor_cache),
        ordered=ordered,
        write_each=write_each,
    )
