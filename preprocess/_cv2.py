"""OpenCV primitives for the families whose sources decode and resize with cv2."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalkit.errors import UserError


def cv2() -> Any:
    """The cv2 module, imported on first use (a missing one names the extra to install)."""
    try:
        import cv2 as module
    except ImportError as e:
        raise UserError("this recipe decodes with OpenCV: pip install 'evalkit[opencv]'") from e
    return module


def decode_bgr(data: bytes) -> np.ndarray:
    """``cv2.imdecode(buf, IMREAD_COLOR)``: BGR HWC uint8; applies EXIF orientation, greyscale to 3 channels."""
    try:
        img = cv2().imdecode(np.frombuffer(data, dtype=np.uint8), cv2().IMREAD_COLOR)
    except cv2().error as e:  # an empty buffer is an assertion inside OpenCV
        raise UserError(f"cannot decode image: {str(e).strip().splitlines()[-1]}") from e
    if img is None:
        raise UserError("cannot decode image: OpenCV could not read it")
    return img


def resize(img: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    """``cv2.resize`` to (width, height): fixed-support kernels, no antialiasing."""
    flags = {"nearest": cv2().INTER_NEAREST, "bilinear": cv2().INTER_LINEAR, "bicubic": cv2().INTER_CUBIC}
    return cv2().resize(img, (width, height), interpolation=flags[interpolation])
