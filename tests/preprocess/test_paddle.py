"""PaddleClas: rounded resize_short, cv2 bilinear without antialias, floor crop offsets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import preprocess
from preprocess.paddle import Params, resized_size

cv2 = pytest.importorskip("cv2", reason="the paddle recipe needs evalkit[opencv]")

from .conftest import encode  # noqa: E402

CSPDARKNET = Params(resize_short=288, crop=256)


def test_long_side_is_rounded_not_truncated():
    # 303 * 256/200 = 387.84: PaddleClas rounds to 388 where torchvision truncates to 387
    assert resized_size(303, 200, Params()) == (388, 256)
    assert resized_size(200, 303, Params()) == (256, 388)


def test_pixels_equal_cv2_resize_floor_crop_and_float32_normalise():
    data = encode(303, 201)
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    resized = cv2.resize(rgb, (386, 256), interpolation=cv2.INTER_LINEAR)  # 303*256/201 = 385.9
    crop = resized[(256 - 224) // 2:][:224, (386 - 224) // 2:][:, :224]
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    expected = ((crop.astype(np.float32) * np.float32(1 / 255) - mean) / std).transpose(2, 0, 1)
    assert np.array_equal(preprocess.build(Params())(data), expected)


def test_odd_differences_crop_at_the_floor():
    """291 x 288 needs no resize; (291 - 256) // 2 = 17 where torchvision would round 17.5 to 18."""
    data = encode(291, 288)
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    crop = rgb[16:272, 17:273].astype(np.float32)
    expected = (crop * np.float32(1 / 255) - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    assert np.array_equal(preprocess.build(CSPDARKNET)(data), expected.transpose(2, 0, 1))


def test_shared_images_give_crop_sized_rgb(sample_root):
    recipe = preprocess.build(CSPDARKNET)
    for path in sorted(sample_root.glob("*/*.JPEG"))[:20]:
        assert recipe(path.read_bytes()).shape == (3, 256, 256)


def test_crop_larger_than_resize_is_a_user_error():
    with pytest.raises(Exception, match="larger than"):
        Params(resize_short=224, crop=256)
