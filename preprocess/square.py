"""Square-resize flows: resize to an exact size x size (aspect not kept), then a fixed crop.

- MindSpore cspdarknet53: Decode (RGB), Resize((256, 256)) bilinear, CenterCrop 224,
  Normalize on the 0-255 scale, HWC2CHW.
- Ascend ModelZoo CSPResNeXt50, current (ais_bench) flow: PIL resize((256, 256)),
  crop at int((256 - 224) / 2), /255, mean/std, CHW.
- VastAI vdsp (RESIZE_CVTCOLOR_CROP_NORM): OpenCV-style bilinear to the square, crop at a
  fixed (x, y), fp16-rounded mean/std constants, on the 0-1 (DIV255) or 0-255 scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from evalkit.contract import decode_bgr
from evalkit.errors import UserError
from evalkit.preprocess import _cv2, _pil, _torch
from evalkit.preprocess._pil import Interpolation

LIBRARIES = ("pillow", "opencv-python-headless", "opencv-python")


@dataclass
class Params:
    family: str = "square"
    #: pil: Image.open(...).convert('RGB'), no EXIF; cv2: imdecode (EXIF applied), BGR -> RGB
    decoder: str = "pil"
    #: pil: antialiased PIL filter; cv2: cv2.resize fixed-support kernel
    resizer: str = "cv2"
    interpolation: Interpolation = Interpolation.bilinear
    resize: int = 256
    crop: int = 224
    #: crop offset (x = y); null = int((resize - crop) / 2)
    offset: Optional[int] = None
    #: x * scale before mean/std: 1/255 for 0-1 recipes, 1 for 0-255 ones
    scale: float = 1.0 / 255.0
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    def __post_init__(self) -> None:
        if self.decoder not in ("pil", "cv2") or self.resizer not in ("pil", "cv2"):
            raise UserError("preprocess.decoder and preprocess.resizer are 'pil' or 'cv2'")
        if self.crop_offset() + self.crop > self.resize:
            raise UserError(f"preprocess: a {self.crop} crop at offset {self.crop_offset()} does not fit in {self.resize}")

    def crop_offset(self) -> int:
        return int((self.resize - self.crop) / 2) if self.offset is None else self.offset


def output_shape(p: Params) -> tuple[int, int, int]:
    return (3, p.crop, p.crop)


def pixels(data: bytes, params: Params) -> np.ndarray:
    s = params.resize
    if params.decoder == "cv2":
        rgb = np.ascontiguousarray(decode_bgr(data)[:, :, ::-1])
    else:
        rgb = np.asarray(_pil.open_rgb(data))
    if params.resizer == "cv2":
        rgb = _cv2.resize(rgb, s, s, params.interpolation.name)
    else:
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize((s, s), params.interpolation.value))
    o, c = params.crop_offset(), params.crop
    return rgb[o:o + c, o:o + c]


def normalize(pixels: np.ndarray, params: Params) -> np.ndarray:
    mean = np.asarray(params.mean, dtype=np.float32)
    std = np.asarray(params.std, dtype=np.float32)
    x = (pixels.astype(np.float32) * np.float32(params.scale) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def normalize_torch(pixels: Any, params: Params) -> Any:
    return _torch.scale_subtract_divide(pixels, params.scale, params.mean, params.std)
