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
from evalkit.classes import imagenet1k
from evalkit.contract import GROUPS, Context, OfflineRuntime, PrecisionOptions, Recipe, Runtime, Sample, load, plugins
from evalkit.errors import UserError
from evalkit.export import load_torch_model, onnx_file
from evalkit.precision import Transformed
from evalkit.prepare import Prepared, ordered
from evalkit.progress import bar


def runtime_module(name: str) -> ModuleType:
    """The runtime plug-in registered as ``name`` (entry-point group ``evalkit.runtimes``)."""
    return load(GROUPS["runtime"], name)


def check_precision(precision: str, runtime: str) -> None:
    """Refuse, before any work, a precision the runtime cannot run, naming the runtimes that can."""
    if precision in getattr(runtime_module(runtime), "PRECISIONS", ("fp32",)):
        return
    able = [n for n in plugins(GROUPS["runtime"]) if precision in getattr(runtime_module(n), "PRECISIONS", ("fp32",))]
    raise UserError(f"runtime={runtime} cannot run precision={precision}; runtimes that can: {', '.join(able) or 'none'}")


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
        for sample, array in bar(zip(samples, arrays), total=len(samples), disable=not progress):
            written.append(output.resolve() / save(tmp, sample, array))
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def make_context(model: Any, recipe: Recipe, cache_dir: Path, samples: list[Sample] | None = None,
                 tensor_cache: Path | None = None, precision: PrecisionOptions | None = None) -> Context:
    """The Context a plug-in receives: the data, and the core's services bound to it.

    Its ``onnx_file`` is a ``precision.Transformed``: the model in ``precision`` (default fp32); a transform
    gets a context of its calibration samples whose ``onnx_file`` is the fp32 source.
    """
    precision = precision or PrecisionOptions()
    samples = list(samples or [])
    source = partial(onnx_file, model, recipe, cache_dir)
    calibration_context = partial(make_context, model, recipe, cache_dir, tensor_cache=tensor_cache)
    return Context(
        model=model, recipe=recipe, precision=precision, cache_dir=cache_dir, samples=samples,
        tensor_cache=tensor_cache, classes=imagenet1k(),
        onnx_file=Transformed(source, precision, recipe, cache_dir, samples, calibration_context),
        torch_model=partial(load_torch_model, model),
        prepared=partial(Prepared, recipe=recipe, cache_dir=tensor_cache),
        ordered=ordered,
        write_each=write_each,
    )
