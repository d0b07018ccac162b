"""mmclassification v0.x test pipelines (mmcv 1.x), CSPNet and ResNeSt configs.

cv2 decode (BGR, EXIF applied) -> either Resize(short side S, long side truncated) +
CenterCrop (round-half-even offsets), or the efficientnet_style CenterCrop (a float crop
side size/(size+32) of the short side that mmcv's int32 box truncates, then a resize to
size x size) -> Normalize on the 0-255 scale with cv2 arithmetic, BGR to RGB -> CHW.
Resizing is PIL (``backend='pillow'``) on the BGR array; PIL filters each channel alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from evalkit.contract import decode_bgr, opencv
from evalkit.errors import UserError
from evalkit.preprocess import _torch
from evalkit.preprocess._pil import Interpolation

LIBRARIES = ("pillow", "opencv-python-headless", "opencv-python")


@dataclass
class Params:
    family: str = "mmcls"
    #: Resize(size=(resize_short, -1)); null with efficientnet_style
    resize_short: Optional[int] = 256
    crop: int = 224
    efficientnet_style: bool = False
    #: efficientnet_style only: the crop side is crop / (crop + crop_padding) of the short side
    crop_padding: int = 32
    interpolation: Interpolation = Interpolation.bicubic
    mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    to_rgb: bool = True

    def __post_init__(self) -> None:
        if self.efficientnet_style == (self.resize_short is not None):
            raise UserError("preprocess: set either resize_short (Resize + CenterCrop) or efficientnet_style=true, not both")


def output_shape(p: Params) -> tuple[int, int, int]:
    return (3, p.crop, p.crop)


def _pil_resize(img: np.ndarray, width: int, height: int, p: Params) -> np.ndarray:
    """``mmcv.imresize(..., backend='pillow')``."""
    return np.array(Image.fromarray(img).resize((width, height), p.interpolation.value))


def resize_short(img: np.ndarray, p: Params) -> np.ndarray:
    h, w = img.shape[:2]
    s = p.resize_short
    if min(h, w) == s:
        return img
    if w < h:
        return _pil_resize(img, s, int(s * h / w), p)
    return _pil_resize(img, int(s * w / h), s, p)


def center_crop(img: np.ndarray, p: Params) -> np.ndarray:
    """mmcls CenterCrop; the inclusive box goes through ``mmcv.imcrop`` (int32 cast truncates)."""
    h, w = img.shape[:2]
    ch = cw = float(p.crop) / (p.crop + p.crop_padding) * min(h, w) if p.efficientnet_style else p.crop
    y1 = max(0, int(round((h - ch) / 2.0)))
    x1 = max(0, int(round((w - cw) / 2.0)))
    y2 = int(min(h, y1 + ch) - 1)
    x2 = int(min(w, x1 + cw) - 1)
    img = img[y1:y2 + 1, x1:x2 + 1]
    if p.efficientnet_style:
        img = _pil_resize(img, p.crop, p.crop, p)
    return img


def normalize(pixels: np.ndarray, params: Params) -> np.ndarray:
    """``mmcv.imnormalize`` (float32 image, float64 mean and 1/std applied by cv2, BGR to RGB), then CHW."""
    cv2 = opencv()
    img = pixels.astype(np.float32)
    mean = np.float64(np.asarray(params.mean).reshape(1, -1))
    stdinv = 1 / np.float64(np.asarray(params.std).reshape(1, -1))
    if params.to_rgb:
        cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
    cv2.subtract(img, mean, img)
    cv2.multiply(img, stdinv, img)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def normalize_torch(pixels: Any, params: Params) -> Any:
    """cv2 rounds the float64 mean and 1/std to the float32 image's type, then works in float32."""
    x = _torch.chw(pixels, flip_channels=params.to_rgb)
    x.sub_(_torch.const(x, params.mean))
    x.mul_(_torch.const(x, (1 / np.float64(params.std)).tolist()))
    return x


def pixels(data: bytes, params: Params) -> np.ndarray:
    """The cropped BGR image (uint8 HWC), as mmcls holds it before Normalize."""
    img = decode_bgr(data)
    if not params.efficientnet_style:
        img = resize_short(img, params)
    return center_crop(img, params)
