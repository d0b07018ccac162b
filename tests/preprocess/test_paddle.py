"""PaddleClas: rounded resize_short, cv2 bilinear without antialias, floor crop offsets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evalkit import preprocess
from evalkit.preprocess.paddle import Params, resized_size

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


def paddleclas_eval(data: bytes, short: int, crop: int) -> np.ndarray:
    """ppcls DecodeImage, ResizeImage, CropImage, NormalizeImage and the dataset's HWC->CHW, step by step."""
    img = cv2.imdecode(np.frombuffer(data, dtype="uint8"), 1)[:, :, ::-1]
    img_h, img_w = img.shape[:2]
    percent = float(short) / min(img_w, img_h)
    w, h = int(round(img_w * percent)), int(round(img_h * percent))
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    w_start, h_start = (w - crop) // 2, (h - crop) // 2
    img = img[h_start:h_start + crop, w_start:w_start + crop, :]
    mean = np.array([0.485, 0.456, 0.406]).reshape((1, 1, 3)).astype("float32")
    std = np.array([0.229, 0.224, 0.225]).reshape((1, 1, 3)).astype("float32")
    img = (img.astype("float32") * np.float32(eval("1.0/255.0")) - mean) / std
    return img.transpose((2, 0, 1))


def test_zero_difference_with_paddleclas_ops_on_every_shared_image(sample_root):
    recipe = preprocess.build(CSPDARKNET)
    for path in sorted(sample_root.glob("*/*.JPEG")):
        data = path.read_bytes()
        assert np.array_equal(recipe(data), paddleclas_eval(data, 288, 256)), path.name


def test_crop_larger_than_resize_is_a_user_error():
    with pytest.raises(Exception, match="larger than"):
        Params(resize_short=224, crop=256)
