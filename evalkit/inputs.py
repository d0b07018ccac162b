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


USAGE = "python -m evalkit.inputs runtime=NAME [overrides] output=DIR"
#: ``--help``: Hydra's grammar would reject the flag, so the command answers it before composing
HELP = f"""usage: {USAGE}
{__doc__}
arguments (key=value, no dashes):
  runtime=NAME           a runtime that feeds a device from files (ascend, vamp)
  overrides              as for python -m evalkit (model=, preprocess=, dataset=, ...; see python -m evalkit --help)
  output=DIR             the folder to write the inputs to"""


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import exit_on_user_error, output_and_overrides, print_help_if_asked
    from evalkit.config import cache_dir, compose, tensor_cache_dir

    args = list(sys.argv[1:] if argv is None else argv)
    print_help_if_asked(args, HELP)

    def run() -> None:
        output, overrides = output_and_overrides(args, USAGE)
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
