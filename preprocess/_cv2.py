"""OpenCV resize for the families whose sources resize with cv2 (decode: ``evalkit.contract.decode_bgr``)."""

from __future__ import annotations

import numpy as np

from evalkit.contract import opencv


def resize(img: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    """``cv2.resize`` to (width, height): fixed-support kernels, no antialiasing."""
    cv2 = opencv()
    flags = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    return cv2.resize(img, (width, height), interpolation=flags[interpolation])
