"""``python -m evalkit --help``: evalkit's own help, not Hydra's generic one (``--hydra-help`` still shows that).

It lists every choice of every config group as Hydra finds them, nested model entries included, and the
helper commands.
"""

from __future__ import annotations

import textwrap

from evalkit.config import choices

#: the config groups a user picks from, in the order a command line names them
GROUPS = ("model", "preprocess", "runtime", "dataset", "precision", "experiment", "hydra/launcher")

#: every ``python -m evalkit.NAME`` helper command, in one line (tests/evalkit/test_help.py checks none is missing)
COMMANDS = {
    "gate": "the regression gate: runs or a sweep pass, fail or are unverified (exit 0, 1, 3)",
    "history": "the index of all runs: rebuild it, list the runs, plot a trend",
    "merge": "merge the shard runs of one evaluation into one run",
    "compare": "compare runs side by side, image by image (optionally as an HTML report)",
    "results": "timm's results tables (results-imagenet.csv and its kind) from evalkit runs",
    "zoo": "list the model zoo: entries, sources, recipes and published numbers",
    "export": "export a timm architecture and its weights to ONNX, the recipe in its metadata",
    "inputs": "write the input files a device tool reads (Ascend .bin, VastAI npz) from evalkit's recipe",
    "diverge": "where a transformed (int8, fp16) model parts from its reference, layer by layer",
    "bisect": "which layers an int8 model keeps in fp32 to stay within a target of fp32 top-1",
    "audit": "where the points went: published -> deployed top-1 split into export, recipe, precision, device",
    "report": "the nightly site: the latest gate, trends, one page per run, what flipped (static HTML)",
    "cache": "what evalkit keeps on disk: list it, prune it by age or size, verify it",
    "confref": "the configuration reference, generated from the schemas (Markdown)",
}


def main_help() -> str:
    """The text of ``python -m evalkit --help``."""
    groups = "\n".join(textwrap.fill(", ".join(choices(group)), width=110, initial_indent=f"  {group}: ",
                                     subsequent_indent="      ") for group in GROUPS)
    commands = "\n".join(f"  python -m evalkit.{name:<9} {line}" for name, line in COMMANDS.items())
    return f"""usage: python -m evalkit [group=choice ...] [key=value ...]     (Hydra overrides, no dashes)
       python -m evalkit -m group=a,b [key=x,y ...]              (a sweep: one run per combination)

evalkit evaluates one model, prepared by one preprocessing recipe, on one runtime, on an ImageNet set, and
compares its top-1/top-5 with the numbers the model's source published. Each run lands in results/ (run.json,
per-image predictions). With no arguments it runs the demo: a real pretrained model on a few shipped photos.

config groups (group=choice; a model entry sets its recipe, preprocess=<family> switches to another):
{groups}

keys: any key of the composed config, e.g. dataset.root=DIR, dataset.limit=N, runtime.batch_size=64,
  preprocess.crop_pct=0.9, model.onnx=FILE; python -m evalkit [overrides] --cfg job shows them all.

other commands (each takes --help):
{commands}

examples:
  python -m evalkit model=cspresnext50 runtime=ort dataset=imagefolder dataset.root=/data/imagenet/val
  python -m evalkit -m model=cspresnet50,mmcls/cspresnet50 precision=fp32,fp16 dataset=imagenet

Hydra's options work as usual: --cfg job, --info, -m/--multirun, --hydra-help (Hydra's own help)."""
