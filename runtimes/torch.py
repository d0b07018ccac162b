"""PyTorch eager: the timm model with the user's weights, the framework the weights came from.

The reference point of a framework comparison: the same weights through ONNX Runtime,
TensorRT or a device should agree with it image by image.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from evalkit.contract import Context, Runtime
from evalkit.errors import UserError, at_least


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

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(self.torch.from_numpy(np.ascontiguousarray(batch))).float().numpy()

    def info(self) -> dict[str, Any]:
        return {"torch": metadata.version("torch"), "timm": metadata.version("timm"), "weights": self.weights,
                "threads": self.torch.get_num_threads()}


def open(options: Options, context: Context) -> TorchRuntime:
    if not context.model.weights:
        raise UserError(f"runtime=torch runs model {context.model.name} from its weights: pass model.weights=PATH")
    net = context.torch_model()  # says which extra to install when torch/timm are missing
    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    return TorchRuntime(net, torch, context, context.model.weights)
