"""PyTorch eager: the timm model with the user's weights, the framework the weights came from.

The reference point of a framework comparison: the same weights through ONNX Runtime,
TensorRT or a device should agree with it image by image. ``precision=fp16|bf16`` runs the model
under ``torch.autocast`` (the matmul/conv ops in that type, the rest in fp32), as timm's ``--amp`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from evalkit.contract import Context, Runtime
from evalkit.errors import UserError, at_least

#: fp16 and bf16 by autocast; int8 needs a quantized graph (an ONNX runtime runs the int8 transform)
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class Options:
    name: str = "torch"
    batch_size: int = 32
    #: intra-op threads; 0 keeps PyTorch's default
    threads: int = 0

    def __post_init__(self) -> None:
        for key, minimum in (("batch_size", 1), ("threads", 0)):
            at_least(f"runtime.{key}", getattr(self, key), minimum)


class TorchRuntime(Runtime):
    def __init__(self, net: Any, torch: Any, context: Context, weights: str) -> None:
        self.net, self.torch, self.weights = net, torch, weights
        self.input_shape = context.recipe.output_shape
        self.num_outputs = context.model.num_classes
        self.precision = context.precision.name
        self.autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self.torch.from_numpy(np.ascontiguousarray(batch))
        with self.torch.inference_mode(), self.torch.autocast("cpu", dtype=self.autocast,
                                                              enabled=self.autocast is not None):
            return self.net(x).float().numpy()

    def info(self) -> dict[str, Any]:
        return {"torch": metadata.version("torch"), "timm": metadata.version("timm"), "weights": self.weights,
                "threads": self.torch.get_num_threads(),
                "executed_precision": f"{self.precision} (autocast)" if self.autocast is not None else "fp32"}


def open(options: Options, context: Context) -> TorchRuntime:
    if not context.model.weights:
        raise UserError(f"runtime=torch runs model {context.model.name} from its weights: pass model.weights=PATH")
    net = context.torch_model()  # says which extra to install when torch/timm are missing
    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    return TorchRuntime(net, torch, context, context.model.weights)
