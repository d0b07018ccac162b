"""timm's eval transform (``transforms_imagenet_eval``) with PIL resampling.

Matches ``timm.data.create_transform(input_size, crop_pct, crop_mode, interpolation, mean, std)``
bit for bit. The scale size is ``floor(side / crop_pct)`` for each side of the input size; then
- center (default): a square scale size is torchvision's ``Resize(int)`` (shorter side to it, long side
  truncated); a non-square one is ``ResizeKeepRatio`` (the smaller of the two side ratios, sides rounded);
  then a center crop with round-half-even offsets;
- squash: resize to exactly the scale size (aspect not kept), then a center crop;
- border: ``ResizeKeepRatio`` by the larger ratio (the whole image fits the scale size), then
  ``CenterCropOrPad``: sides shorter than the input are padded with the mean colour, longer ones cropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from evalkit.contract import OMIT_DEFAULT
from evalkit.errors import UserError, at_least
from evalkit.preprocess import _pil, _torch
from evalkit.preprocess._pil import Interpolation

LIBRARIES = ("pillow",)

CROP_MODES = ("center", "squash", "border")

@dataclass
class Params:
    family: str = "timm"
    #: square input side; null: input_size's when given, else 224
    size: Optional[int] = None
    #: [3, H, W] for a non-square input; null: [3, size, size]. A square one is stored as ``size``, so it is
    #: the same recipe (and fingerprint) as the ``size`` it equals
    input_size: Optional[list[int]] = field(default=None, metadata=OMIT_DEFAULT)
    crop_pct: float = 0.875
    #: center, squash or border (see the module docstring)
    crop_mode: str = field(default="center", metadata=OMIT_DEFAULT)
    interpolation: Interpolation = Interpolation.bilinear
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    def __post_init__(self) -> None:
        if self.input_size is not None:
            if len(self.input_size) != 3 or self.input_size[0] != 3 or min(self.input_size[1:]) < 1:
                raise UserError(f"preprocess.input_size={self.input_size} must be [3, H, W] with H, W >= 1")
            h, w = self.input_size[1:]
            if self.size is not None and (h, w) != (self.size, self.size):
                raise UserError(f"preprocess.size={self.size} and preprocess.input_size={self.input_size} disagree: "
                                "set only one of them (preprocess.size=null to use input_size)")
            self.size, self.input_size = (h, None) if h == w else (None, [3, h, w])
        elif self.size is None:
            self.size = 224
        at_least("preprocess.size", self.size, 1)
        if self.crop_mode not in CROP_MODES:
            raise UserError(f"preprocess.crop_mode={self.crop_mode!r} is not one of {', '.join(CROP_MODES)}")
        if not 0 < self.crop_pct <= 1:
            raise UserError(f"preprocess.crop_pct={self.crop_pct} must be in (0, 1]")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise UserError("preprocess.mean and preprocess.std need 3 values (R, G, B)")


def input_hw(p: Params) -> tuple[int, int]:
    """(H, W) of the model input."""
    if p.input_size is not None:
        return p.input_size[1], p.input_size[2]
    assert p.size is not None  # __post_init__ sets one of the two
    return p.size, p.size


def scale_size(p: Params) -> tuple[int, int]:
    """(H, W) the image is resized to before the crop: ``floor(side / crop_pct)`` per side, as timm does."""
    h, w = input_hw(p)
    return math.floor(h / p.crop_pct), math.floor(w / p.crop_pct)


def output_shape(p: Params) -> tuple[int, int, int]:
    return (3, *input_hw(p))


def resize_keep_ratio(img: Image.Image, height: int, width: int, longest: bool, interp: Interpolation) -> Image.Image:
    """timm ``ResizeKeepRatio``: one ratio for both sides, the larger of img/target per side with ``longest`` (the
    image fits inside) else the smaller (it covers); each side ``round(side / ratio)``, half to even."""
    w, h = img.size
    ratios = (h / height, w / width)
    ratio = max(ratios) if longest else min(ratios)
    return img.resize((round(w / ratio), round(h / ratio)), interp.value)


def center_crop_or_pad(img: Image.Image, height: int, width: int, fill: tuple[int, ...]) -> Image.Image:
    """timm ``CenterCropOrPad``: a side shorter than the crop is padded with ``fill`` (the odd pixel at the right or
    bottom), then the center crop."""
    w, h = img.size
    if width > w or height > h:
        padded = Image.new("RGB", (max(w, width), max(h, height)), fill)
        padded.paste(img, (max(width - w, 0) // 2, max(height - h, 0) // 2))
        img = padded
    return _pil.center_crop(img, height, width)


def pixels(data: bytes, params: Params) -> np.ndarray:
    img = _pil.open_rgb(data)
    height, width = input_hw(params)
    scale_h, scale_w = scale_size(params)
    interp = params.interpolation
    if params.crop_mode == "border":
        img = resize_keep_ratio(img, scale_h, scale_w, longest=True, interp=interp)
        fill = tuple(round(255 * v) for v in params.mean)  # timm's fill: the mean colour, rounded half to even
        return np.asarray(center_crop_or_pad(img, height, width, fill))
    if params.crop_mode == "squash":
        img = img.resize((scale_w, scale_h), interp.value)
    elif scale_h == scale_w:
        img = _pil.resize_shorter(img, scale_h, interp)
    else:
        img = resize_keep_ratio(img, scale_h, scale_w, longest=False, interp=interp)
    return np.asarray(_pil.center_crop(img, height, width))


def pixels_torch(data: list[bytes], params: Params, device: str) -> tuple[Any, dict[int, str]]:
    """``pixels`` on ``device`` (``dataset.decode=gpu``): the same sizes and crop, with torchvision's decode and
    antialiased tensor resize in place of PIL's (close, not equal)."""
    if params.crop_mode == "border" or params.interpolation == Interpolation.lanczos:
        raise UserError(f"dataset.decode=gpu does not do timm's crop_mode={params.crop_mode} with "
                        f"interpolation={params.interpolation.name}; use dataset.decode=cpu")
    with _torch.own_stream(device):
        return _torch.stack_nhwc(_resized(_torch.decode_rgb(data, device), params), (*input_hw(params), 3), device)


def _resized(images: list[Any], params: Params) -> list[Any]:
    """``pixels``'s resize and crop of each decoded CHW tensor; a str (an image that failed) stays."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2.functional import resize

    mode = InterpolationMode[params.interpolation.name.upper()]
    height, width = input_hw(params)
    scale_h, scale_w = scale_size(params)
    for i, img in enumerate(images):
        if isinstance(img, str):
            continue
        h, w = img.shape[-2:]
        if params.crop_mode == "squash":
            size = [scale_h, scale_w]
        elif scale_h == scale_w:  # torchvision Resize(int): shorter side to the size, the long side truncated
            size = [int(scale_h * h / w), scale_h] if w <= h else [scale_h, int(scale_h * w / h)]
        else:
            ratio = min(h / scale_h, w / scale_w)
            size = [round(h / ratio), round(w / ratio)]
        img = resize(img, size, interpolation=mode, antialias=True)
        top, left = int(round((img.shape[-2] - height) / 2.0)), int(round((img.shape[-1] - width) / 2.0))
        images[i] = img[:, top:top + height, left:left + width]
    return images


def normalize(pixels: np.ndarray, params: Params) -> np.ndarray:
    return _pil.to_chw_01(pixels, params.mean, params.std)


def normalize_torch(pixels: Any, params: Params) -> Any:
    return _torch.divide_subtract_divide(pixels, 255.0, params.mean, params.std)
