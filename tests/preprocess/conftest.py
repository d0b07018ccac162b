"""Helpers for recipe tests: synthetic images of chosen sizes, modes and EXIF orientation."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(w: int, h: int, mode: str = "RGB", fmt: str = "PNG", seed: int = 0, orientation: int | None = None) -> bytes:
    """An image of w x h random pixels; ``orientation`` writes that EXIF tag (JPEG)."""
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    buf = io.BytesIO()
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(buf, "JPEG", quality=95, exif=exif)
    else:
        img.save(buf, fmt)
    return buf.getvalue()
