"""The official ResNeSt ECenterCrop, against torchvision and PIL as verify.py calls them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evalkit import preprocess
from evalkit.preprocess._pil import Interpolation
from evalkit.preprocess.resnest import Params, crop_box

T = pytest.importorskip("torchvision.transforms", reason="parity with torchvision needs evalkit[torch]")

from .conftest import encode  # noqa: E402


def official(size: int, interpolation=Image.BICUBIC):
    """scripts/torch/verify.py: ECenterCrop(size), ToTensor, Normalize, built from torchvision."""
    resize = T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC
                      if interpolation == Image.BICUBIC else T.InterpolationMode.BILINEAR)

    def ecenter_crop(img):
        w, h = img.size
        crop = float(size) / (size + 32) * min(w, h)
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
        return resize(img.crop((left, top, left + crop, top + crop)))

    return T.Compose([ecenter_crop, T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


@pytest.mark.parametrize("size", [224, 256, 320, 416])
def test_bit_exact_with_the_official_transform_on_every_shared_image(sample_root, size):
    ours, theirs = preprocess.build(Params(size=size)), official(size)
    for path in sorted(sample_root.glob("*/*.JPEG")):
        expected = theirs(Image.open(path).convert("RGB")).numpy()
        assert np.array_equal(ours(path.read_bytes()), expected), path.name


def test_bilinear_variant_matches_train_py_validation():
    data = encode(500, 375)
    expected = official(224, Image.BILINEAR)(Image.open(__import__("io").BytesIO(data)).convert("RGB")).numpy()
    ours = preprocess.build(Params(size=224, interpolation=Interpolation.bilinear))(data)
    assert np.array_equal(ours, expected)


def test_crop_is_size_over_size_plus_32_of_the_short_side():
    left, top, right, bottom = crop_box(500, 375, Params(size=224))
    assert right - left == pytest.approx(224 / 256 * 375)
    assert (left, top) == (int(round((500 - 328.125) / 2)), int(round((375 - 328.125) / 2)))


def test_images_smaller_than_the_output_are_upscaled():
    assert preprocess.build(Params(size=320))(encode(100, 80)).shape == (3, 320, 320)
