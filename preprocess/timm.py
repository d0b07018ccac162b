"""timm's eval transform: shorter side to floor(size / crop_pct), center crop, PIL resampling.

Matches ``timm.data.create_transform(**resolve_data_config(...))`` (crop_mode 'center')
bit for bit, including torchvision's long-side truncation and round-half-even offsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from evalkit.errors import UserError
from evalkit.preprocess import _pil
from evalkit.preprocess._pil import Interpolation

LIBRARIES = ("pillow",)


@dataclass
class Params:
    family: str = "timm"
    size: int = 224
    crop_pct: float = 0.875
    interpolation: Interpolation = Interpolation.bilinear
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    def __post_init__(self) -> None:
        if not 0 < self.crop_pct <= 1:
            raise UserError(f"preprocess.crop_pct={self.crop_pct} must be in (0, 1]")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise UserError("preprocess.mean and preprocess.std need 3 values (R, G, B)")


def scale_size(p: Params) -> int:
    return int(math.floor(p.size / p.crop_pct))


def output_shape(p: Params) -> tuple[int, int, int]:
    return (3, p.size, p.size)


def pixels(data: bytes, params: Params) -> np.ndarray:
    img = _pil.open_rgb(data)
    img = _pil.resize_shorter(img, scale_size(params), params.interpolation)
    return np.asarray(_pil.center_crop(img, params.size))


def normalize(pixels: np.ndarray, params: Params) -> np.ndarray:
    return _pil.to_chw_01(pixels, params.mean, params.std)
