"""The images the real ImageNet holds, decoded by each recipe the way its source decodes them."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from evalkit import preprocess
from evalkit.errors import UserError

from .conftest import encode

pytest.importorskip("cv2", reason="the cv2 recipes need evalkit[opencv]")

#: family -> the library its source decodes with
FAMILIES = {"timm": "pil", "resnest": "pil", "mmcls": "cv2", "paddle": "cv2", "square": "pil"}


def recipe(family):
    return preprocess.build(preprocess.families()[family].Params())


def jpeg(mode: str = "RGB", size=(320, 240)) -> bytes:
    buf = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 4 if mode == "CMYK" else 3), dtype=np.uint8)
    Image.fromarray(pixels, "CMYK" if mode == "CMYK" else "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A PNG header claiming 1.6 gigapixels with almost no data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("family", FAMILIES)
def test_png_cmyk_and_greyscale_files_named_jpeg_decode_to_rgb(family):
    r = recipe(family)
    for data in (encode(300, 200, fmt="PNG"), jpeg("CMYK"), encode(300, 200, mode="L", fmt="PNG")):
        out = r(data)
        assert out.shape == r.output_shape and np.isfinite(out).all()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("data,name", [(b"", "zero-byte"), (bomb_png(), "decompression bomb"), (b"GIF89a\x00", "garbage")])
def test_undecodable_files_are_a_user_error(family, data, name):
    with pytest.raises(UserError, match="cannot decode image"):
        recipe(family)(data)


@pytest.mark.parametrize("family", FAMILIES)
def test_truncated_jpeg_follows_its_source(family):
    """PIL refuses a truncated JPEG; the cv2 sources get whatever cv2.imdecode gives (OpenCV 4 filled the
    missing rows with grey, OpenCV 5 returns nothing): evalkit does what the installed library does."""
    import cv2

    data = jpeg()[: len(jpeg()) // 2]
    refuses = FAMILIES[family] == "pil" or cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None
    if refuses:
        with pytest.raises(UserError, match="cannot decode image"):
            recipe(family)(data)
    else:
        assert recipe(family)(data).shape == recipe(family).output_shape


@pytest.mark.parametrize("family", FAMILIES)
def test_exif_orientation_follows_its_source(family):
    """A portrait photo stored landscape with EXIF orientation 6: cv2 sources rotate it, PIL sources do not."""
    rotated = encode(400, 200, orientation=6)
    plain = encode(400, 200, orientation=1)
    same = np.array_equal(recipe(family)(rotated), recipe(family)(plain))
    assert same == (FAMILIES[family] == "pil")
