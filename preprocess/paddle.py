"""PaddleClas eval (ppcls/data/preprocess/ops/operators.py, v2.4).

cv2 decode then BGR->RGB, ResizeImage(resize_short) with both sides *rounded*, cv2
INTER_LINEAR (no antialias), CropImage with floor offsets, NormalizeImage
``(x * scale - mean) / std`` in float32, HWC -> CHW.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalkit.contract import decode_bgr
from evalkit.errors import UserError
from evalkit.preprocess import _cv2, _torch

LIBRARIES = ("opencv-python-headless", "opencv-python")


@dataclass
class Params:
    family: str = "paddle"
    resize_short: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    scale: float = 1.0 / 255.0
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    def __post_init__(self) -> None:
        if self.crop > self.resize_short:
            raise UserError(f"preprocess.crop={self.crop} is larger than preprocess.resize_short={self.resize_short}")


def output_shape(p: Params) -> tuple[int, int, int]:
    return (3, p.crop, p.crop)


def resized_size(width: int, height: int, p: Params) -> tuple[int, int]:
    percent = float(p.resize_short) / min(width, height)
    return int(round(width * percent)), int(round(height * percent))


def pixels(data: bytes, params: Params) -> np.ndarray:
    img = decode_bgr(data)[:, :, ::-1]
    h, w = img.shape[:2]
    img = _cv2.resize(img, *resized_size(w, h, params), params.interpolation)
    h, w = img.shape[:2]
    top, left = (h - params.crop) // 2, (w - params.crop) // 2
    return img[top:top + params.crop, left:left + params.crop, :]


def normalize(pixels: np.ndarray, params: Params) -> np.ndarray:
    """NormalizeImage ``(x * scale - mean) / std`` in float32, then the dataset's HWC -> CHW."""
    mean = np.array(params.mean).reshape((1, 1, 3)).astype("float32")
    std = np.array(params.std).reshape((1, 1, 3)).astype("float32")
    img = (pixels.astype("float32") * np.float32(params.scale) - mean) / std
    return np.ascontiguousarray(img.transpose((2, 0, 1)))


def normalize_torch(pixels: Any, params: Params) -> Any:
    return _torch.scale_subtract_divide(pixels, params.scale, params.mean, params.std)
