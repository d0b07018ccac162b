"""Square-resize flows of MindSpore, Ascend (ais_bench) and VastAI vdsp."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evalkit import preprocess
from evalkit.preprocess.square import Params

cv2 = pytest.importorskip("cv2", reason="the square recipe resizes with OpenCV: evalkit[opencv]")

from .conftest import encode  # noqa: E402


def test_aspect_is_not_kept_and_the_crop_offset_is_fixed():
    data = encode(500, 300)
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    square = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_LINEAR)[16:240, 16:240]
    expected = ((square.astype(np.float32) / np.float32(255) - np.float32([0.485, 0.456, 0.406]))
                / np.float32([0.229, 0.224, 0.225]))
    got = preprocess.build(Params())(data)
    assert np.allclose(got, expected.transpose(2, 0, 1), atol=1e-6)


def test_ascend_flow_uses_pil_resize_and_int_half_offset():
    data = encode(400, 300)
    p = Params(resizer="pil", resize=256, crop=224)
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((256, 256), Image.BILINEAR))
    expected = (rgb[16:240, 16:240].astype(np.float32) * np.float32(1 / 255) - np.float32([0.485, 0.456, 0.406])) \
        / np.float32([0.229, 0.224, 0.225])
    assert np.array_equal(preprocess.build(p)(data), expected.transpose(2, 0, 1))


def test_vastai_resnest_offsets_are_floored():
    assert Params(resize=333, crop=256).crop_offset() == 38  # (333 - 256) / 2 = 38.5
    assert Params(resize=333, crop=256, offset=38).crop_offset() == 38


def test_cv2_decoder_follows_exif_and_pil_decoder_does_not():
    data = encode(300, 200, orientation=6)
    a = preprocess.build(Params(decoder="cv2"))(data)
    b = preprocess.build(Params(decoder="pil"))(data)
    assert a.shape == b.shape == (3, 224, 224) and not np.allclose(a, b, atol=0.5)


def test_offset_that_leaves_the_image_is_a_user_error():
    with pytest.raises(Exception, match="does not fit"):
        Params(resize=256, crop=224, offset=40)


def vdsp_emulation(data: bytes, size: int, offset: int, crop: int, mean, std) -> np.ndarray:
    """VastAI image2npz (cv2 decode, BGR->RGB) then vdsp resize (OpenCV bilinear), crop, DIV255 norm."""
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    square = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)[offset:offset + crop, offset:offset + crop]
    return ((square.astype(np.float32) * np.float32(1 / 255) - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1)


def test_vastai_zoo_recipe_on_every_shared_image(sample_root):
    from evalkit.config import compose

    p = compose(["model=vastai/resnest101"]).preprocess
    assert (p.resize, p.offset, p.crop, p.mean[0]) == (333, 38, 256, 0.485107421875)
    recipe = preprocess.build(p)
    for path in sorted(sample_root.glob("*/*.JPEG")):
        data = path.read_bytes()
        assert np.array_equal(recipe(data), vdsp_emulation(data, 333, 38, 256, p.mean, p.std)), path.name
