"""Official ResNeSt ``ECenterCrop`` (scripts/torch/verify.py).

Crop a square of side size/(size+32) of the short side at the center (float box, PIL
rounds it), then resize the crop to size x size. verify.py uses PIL bicubic for every
size; the repo's train.py validation uses bilinear (``interpolation`` picks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalkit.errors import UserError
from evalkit.preprocess import _pil, _torch
from evalkit.preprocess._pil import Interpolation

LIBRARIES = ("pillow",)


@dataclass
class Params:
    family: str = "resnest"
    size: int = 224
    #: the crop is size / (size + padding) of the short side
    padding: int = 32
    interpolation: Interpolation = Interpolation.bicubic
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    def __post_init__(self) -> None:
        if self.size < 1 or self.padding < 0:
            raise UserError("preprocess.size must be positive and preprocess.padding not negative")


def output_shape(p: Params) -> tuple[int, int, int]:
    return (3, p.size, p.size)


def crop_box(width: int, height: int, p: Params) -> tuple[float, float, float, float]:
    """The float box ECenterCrop hands to ``Image.crop`` (which rounds each edge)."""
    crop = float(p.size) / (p.size + p.padding) * min(width, height)
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return (left, top, left + crop, top + crop)


def pixels(data: bytes, params: Params) -> np.ndarray:
    img = _pil.open_rgb(data)
    img = img.crop(crop_box(*img.size, params))
    return np.asarray(img.resize((params.size, params.size), params.interpolation.value))


def normalize(pixels: np.ndarray, params: Params) -> np.ndarray:
    return _pil.to_chw_01(pixels, params.mean, params.std)


def normalize_torch(pixels: Any, params: Params) -> Any:
    return _torch.divide_subtract_divide(pixels, 255.0, params.mean, params.std)
