"""The families' normalisations on torch tensors, for runtimes that normalise on their GPU (issue 16).

A batch then travels as uint8 (a quarter of the float32 bytes) and becomes float on the device. The
values must equal ``normalize``'s bit for bit, so each function repeats its family's IEEE float32
operations in the same order. Constants are tensors on the batch's device: PyTorch's CUDA division by a
host scalar multiplies by its reciprocal instead, which rounds differently. No torch import: the
functions use the tensor's own methods.
"""

from __future__ import annotations

from typing import Any, Sequence


def _const(like: Any, values: float | Sequence[float]) -> Any:
    """float32 constant(s) on ``like``'s device, shaped to broadcast over NCHW channels."""
    return like.new_tensor(values).reshape(-1, 1, 1)


def chw(pixels: Any, flip_channels: bool = False) -> Any:
    """uint8 NHWC -> float32 NCHW (a new tensor), optionally BGR <-> RGB."""
    x = pixels.permute(0, 3, 1, 2).float()
    return x.flip(1) if flip_channels else x


def divide_subtract_divide(pixels: Any, divisor: float, mean: Sequence[float], std: Sequence[float]) -> Any:
    """(x / divisor - mean) / std: torchvision's ToTensor + Normalize."""
    x = chw(pixels)
    x.div_(_const(x, divisor)).sub_(_const(x, mean)).div_(_const(x, std))
    return x


def scale_subtract_divide(pixels: Any, scale: float, mean: Sequence[float], std: Sequence[float]) -> Any:
    """(x * scale - mean) / std: PaddleClas's NormalizeImage and the square-resize flows."""
    x = chw(pixels)
    x.mul_(_const(x, scale)).sub_(_const(x, mean)).div_(_const(x, std))
    return x
