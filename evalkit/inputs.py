"""Write the inputs a device tool reads, from evalkit's own recipe (``python -m evalkit.inputs``).

    python -m evalkit.inputs runtime=ascend model=ascend/cspresnext50 dataset=labelfile ... output=prep_dataset
    python -m evalkit.inputs runtime=vamp dataset=imagefolder dataset.root=val output=npz

A runtime module that can feed its device defines
``write_inputs(samples, recipe, output, tensor_cache, progress)``; ``tensor_cache`` is the folder of
the preprocessed-tensor cache (None: none), so inputs come from the same pixels the runs use.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from evalkit import preprocess
from evalkit import dataset as datasets
from evalkit.dataset import Sample
from evalkit.errors import UserError


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


def main(argv: list[str] | None = None) -> None:
    from evalkit.cli import exit_on_user_error, output_and_overrides
    from evalkit.config import compose

    def run() -> None:
        output, overrides = output_and_overrides(
            list(sys.argv[1:] if argv is None else argv), "python -m evalkit.inputs runtime=NAME [overrides] output=DIR")
        cfg = compose(overrides)
        module = importlib.import_module(f"evalkit.runtimes.{cfg.runtime.name}")
        if not hasattr(module, "write_inputs"):
            raise UserError(f"runtime {cfg.runtime.name} reads no exported inputs; "
                            "runtimes that do: ascend (.bin + .info), vamp (npz + datalist)")
        recipe = preprocess.build(cfg.preprocess)
        samples = datasets.load(cfg.dataset)
        print(f"{len(samples)} images, recipe {recipe.family}:\n{recipe.describe()}")
        cache = Path(cfg.cache.dir).expanduser() if cfg.cache.enabled else None
        for path in module.write_inputs(samples, recipe, output, cache, progress=cfg.progress):
            print(f"wrote {path}")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
