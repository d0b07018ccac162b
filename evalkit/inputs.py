"""Write the inputs a device tool reads, from evalkit's own recipe (``python -m evalkit.inputs``).

    python -m evalkit.inputs runtime=ascend model=ascend/cspresnext50 dataset=labelfile ... output=prep_dataset
    python -m evalkit.inputs runtime=vamp dataset=imagefolder dataset.root=val output=npz

A runtime module that can feed its device defines ``write_inputs(context, output, progress)``
(``evalkit.contract.InputWriter``); its context's ``prepared`` reads the preprocessed-tensor cache, so
inputs come from the same pixels the runs use.
"""

from __future__ import annotations

import sys

from evalkit import preprocess
from evalkit import dataset as datasets
from evalkit.contract import GROUPS, plugins
from evalkit.errors import UserError
from evalkit.plugins import make_context, runtime_module


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import exit_on_user_error, output_and_overrides
    from evalkit.config import cache_dir, compose, tensor_cache_dir

    def run() -> None:
        output, overrides = output_and_overrides(
            list(sys.argv[1:] if argv is None else argv), "python -m evalkit.inputs runtime=NAME [overrides] output=DIR")
        cfg = compose(overrides)
        module = runtime_module(cfg.runtime.name)
        if not hasattr(module, "write_inputs"):
            writers = [n for n in plugins(GROUPS["runtime"]) if hasattr(runtime_module(n), "write_inputs")]
            raise UserError(f"runtime {cfg.runtime.name} reads no exported inputs; "
                            f"runtimes that do: {', '.join(writers) or '(none)'}")
        recipe = preprocess.build(cfg.preprocess)
        samples = datasets.load(cfg.dataset)
        print(f"{len(samples)} images, recipe {recipe.family}:\n{recipe.describe()}")
        cache = tensor_cache_dir(cfg)
        context = make_context(cfg.model, recipe, cache_dir(cfg), samples, cache)
        for path in module.write_inputs(context, output, progress=cfg.progress):
            print(f"wrote {path}")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
