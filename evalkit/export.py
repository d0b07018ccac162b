"""Export a timm architecture plus a weights file to ONNX, with the recipe in its metadata.

The recipe travels with the artifact (timm#2463, PaddleClas#2077): evaluation reads it
back and reports any disagreement with the configured recipe before the run.

    python -m evalkit.export model=cspresnext50 model.weights=cspresnext50.pth output=cspresnext50.onnx
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.config import ModelConfig
from evalkit.contract import Recipe, params_dict, safe_name
from evalkit.errors import UserError
from evalkit.weights import Weights, resolve
from evalkit.cache import touch, write_sidecar

RECIPE_KEY = "evalkit.recipe"
MODEL_KEY = "evalkit.model"
#: bump when the export itself changes, so cached ONNX files are remade
EXPORT_VERSION = "1"
OPSET = 17


def _require_torch() -> tuple[Any, Any]:
    try:
        import timm
        import torch
    except ImportError as e:
        raise UserError(f"exporting to ONNX needs PyTorch and timm ({e.name} is missing): pip install 'evalkit[torch]'") from e
    return torch, timm


def load_torch_model(model: ModelConfig) -> Any:
    """The timm architecture in eval mode with its weights loaded (random weights when the model names none).

    A hub checkpoint goes through timm's own pretrained loading (its filters and strict key check) from the file
    huggingface_hub resolved; a local file is read with ``weights_only=True``.
    """
    torch, timm = _require_torch()
    found = resolve(model) if (model.weights or model.hub_id) else None
    hub = found is not None and found.hub_id is not None
    try:
        net = timm.create_model(model.arch, pretrained=hub, num_classes=model.num_classes,
                                **({"pretrained_cfg_overlay": {"file": str(found.path), "source": ""}} if hub else {}))
    except RuntimeError as e:
        if hub:
            raise UserError(f"{found.hub_id} ({found.path}) does not fit timm {model.arch}: {str(e).splitlines()[0]}; "
                            "check model.arch and model.hub_id") from e
        raise UserError(f"model.arch={model.arch!r} is not a timm architecture ({e})") from e
    if found is not None and not hub:
        path = found.path
        state = timm.models.load_state_dict(str(path))
        if model.weights_keys == "order":
            state = _by_order(state, net.state_dict(), path)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UserError(
                f"{path} does not fit timm {model.arch}: missing {missing[:3]}, unexpected {unexpected[:3]}; "
                "check model.arch, or set model.weights_keys=order for a port with other key names"
            )
    return net.eval()


def _by_order(state: dict, target: dict, path: Path) -> dict:
    skip = "num_batches_tracked"
    src = [k for k in state if not k.endswith(skip)]
    dst = [k for k in target if not k.endswith(skip)]
    shapes_ok = len(src) == len(dst) and all(state[s].shape == target[d].shape for s, d in zip(src, dst))
    if not shapes_ok:
        raise UserError(f"{path}: its tensors, in order, do not have the architecture's shapes; weights_keys=order cannot map them")
    return {d: state[s] for s, d in zip(src, dst)}


def _existing(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{what}={path}: no such file")
    return p


def export(model: ModelConfig, recipe: Recipe, output: Path, check: bool = True) -> dict[str, float]:
    """Write ``output`` (dynamic batch, opset 17, single file) atomically; return the check figures."""
    torch, _ = _require_torch()
    import onnx

    net = load_torch_model(model)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=output.parent)
    os.close(fd)
    try:
        example = torch.zeros(1, *recipe.output_shape)
        with warnings.catch_warnings():  # the TorchScript exporter is chosen on purpose: one file, opset 17
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                net, (example,), tmp, dynamo=False, opset_version=OPSET,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        proto = onnx.load(tmp)
        meta = {RECIPE_KEY: json.dumps(params_dict(recipe.params)), MODEL_KEY: model.name}
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, tmp)
        figures = check_against_torch(net, tmp, recipe) if check else {}
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return figures


def check_against_torch(net: Any, onnx_path: str, recipe: Recipe, n: int = 8) -> dict[str, float]:
    """Max abs logit difference and top-1 agreement of the ONNX graph vs PyTorch on seeded inputs."""
    import onnxruntime
    import torch

    x = np.random.default_rng(0).standard_normal((n, *recipe.output_shape), dtype=np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    sess = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return {
        "max_abs_diff": float(np.abs(ref - got).max()),
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean() * 100),
    }


def cached_path(model: ModelConfig, weights: Weights, recipe: Recipe, cache_dir: Path) -> Path:
    """Where the export of these weights (content and, for a hub checkpoint, id and revision), architecture and
    recipe is cached."""
    key = hashlib.sha256(json.dumps([
        weights.sha256, weights.hub_id, weights.revision, model.arch, model.weights_keys, model.num_classes,
        params_dict(recipe.params), EXPORT_VERSION,
    ]).encode()).hexdigest()[:16]
    return cache_dir / "onnx" / f"{safe_name(model.name)}-{key}.onnx"


def onnx_file(model: ModelConfig, recipe: Recipe, cache_dir: Path) -> Path:
    """``model.onnx``, or an ONNX exported once from the model's weights (a file or a hub checkpoint) and cached
    by content."""
    if model.onnx:
        return _existing(model.onnx, "model.onnx")
    weights = resolve(model)
    out = cached_path(model, weights, recipe, cache_dir)
    if out.is_file():
        touch(out)
    else:
        print(f"exporting {model.arch} weights {weights.hub_id or weights.path} to {out} (first use, cached)",
              file=sys.stderr)
        figures = export(model, recipe, out)
        write_sidecar(out)
        print(_format_check(figures), file=sys.stderr)
    return out


def _format_check(figures: dict[str, float]) -> str:
    return (f"ONNX vs PyTorch on seeded inputs: max abs logit diff {figures['max_abs_diff']:.3g}, "
            f"top-1 agreement {figures['top1_agreement']:.1f}%")


USAGE = "python -m evalkit.export model=NAME [model.weights=PTH] [overrides] output=OUT.onnx"
#: ``--help``: Hydra's grammar would reject the flag, so the command answers it before composing
HELP = f"""usage: {USAGE}
{__doc__}
arguments (key=value, no dashes):
  overrides              as for python -m evalkit (model=, preprocess=, dataset=, ...; see python -m evalkit --help)
  output=OUT.onnx        the ONNX file to write"""


def main(argv: list[str] | None = None) -> None:
    """``python -m evalkit.export [overrides] output=PATH``: overrides as for ``python -m evalkit``."""
    from evalkit.commands import exit_on_user_error, output_and_overrides, print_help_if_asked
    from evalkit.config import compose

    args = list(sys.argv[1:] if argv is None else argv)
    print_help_if_asked(args, HELP)

    def run() -> None:
        output, overrides = output_and_overrides(args, USAGE)
        cfg = compose(overrides)
        from evalkit import preprocess

        recipe = preprocess.build(cfg.preprocess)
        print(f"recipe {recipe.family}:\n{recipe.describe()}")
        figures = export(cfg.model, recipe, output)
        print(f"wrote {output}\n{_format_check(figures)}")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
