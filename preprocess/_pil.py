"""PIL primitives with torchvision's exact geometry, shared by the PIL-based families."""

from __future__ import annotations

import enum
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from evalkit.errors import UserError


class Interpolation(enum.Enum):
    """PIL resampling filters (antialiased when downscaling)."""

    nearest = Image.Resampling.NEAREST
    bilinear = Image.Resampling.BILINEAR
    bicubic = Image.Resampling.BICUBIC
    lanczos = Image.Resampling.LANCZOS


def open_rgb(data: bytes) -> Image.Image:
    """Decode like ``Image.open(f).convert('RGB')``: no EXIF rotation, greyscale/CMYK to RGB."""
    try:
        img = Image.open(io.BytesIO(data))
        return img.convert("RGB")
    except UnidentifiedImageError as e:  # its message names a BytesIO address: not the same twice
        raise UserError("cannot decode image: not a format PIL reads") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot decode image: {e}") from e


def resize_shorter(img: Image.Image, size: int, interp: Interpolation) -> Image.Image:
    """torchvision ``Resize(int)``: shorter side to ``size``, long side truncated."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    return img.resize((new_w, new_h), interp.value)


def center_crop(img: Image.Image, height: int, width: int) -> Image.Image:
    """torchvision ``CenterCrop``: offsets ``int(round(d / 2))`` (round half to even)."""
    w, h = img.size
    if height > h or width > w:
        raise ValueError(f"center crop {width}x{height} larger than image {w}x{h}")
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
    return img.crop((left, top, left + width, top + height))


def to_chw_01(pixels: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """torchvision ``ToTensor`` + ``Normalize`` in float32: (x / 255 - mean) / std, CHW, from uint8 HWC RGB.

    One float copy, then in place: the same IEEE operations in the same order as torchvision's, so the
    values are identical, without the three temporaries.
    """
    x = pixels.transpose(2, 0, 1).astype(np.float32)
    np.divide(x, np.float32(255), out=x)
    np.subtract(x, np.asarray(mean, dtype=np.float32)[:, None, None], out=x)
    np.divide(x, np.asarray(std, dtype=np.float32)[:, None, None], out=x)
    return x
