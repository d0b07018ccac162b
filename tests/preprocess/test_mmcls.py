"""mmcls v0.x pipelines: cv2 decode, PIL resize on BGR, inclusive crop boxes, cv2 normalisation.

mmcv 1.x does not build from the registry here (its sdist needs a compiler set-up for
its ops), so the geometry is checked against torchvision on the same pixels and the
arithmetic against a float64 formula; EXIF follows cv2.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evalkit import preprocess
from evalkit.contract import decode_bgr
from evalkit.preprocess import mmcls
from evalkit.preprocess.mmcls import Params

T = pytest.importorskip("torchvision.transforms", reason="geometry parity needs evalkit[torch]")
cv2 = pytest.importorskip("cv2", reason="the mmcls recipe needs evalkit[opencv]")

from .conftest import encode  # noqa: E402

CSP = Params(resize_short=288, crop=256)
RESNEST = Params(resize_short=None, crop=256, efficientnet_style=True)


def test_resize_and_center_crop_equal_torchvision_geometry_on_every_shared_image(sample_root):
    """Resize(short, truncated long side) + CenterCrop(round-half-even) is torchvision's geometry."""
    tv = T.Compose([T.Resize(288, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(256)])
    for path in sorted(sample_root.glob("*/*.JPEG")):
        bgr = decode_bgr(path.read_bytes())
        ours = mmcls.center_crop(mmcls.resize_short(bgr, CSP), CSP)
        assert np.array_equal(ours, np.asarray(tv(Image.fromarray(bgr)))), path.name


def test_normalisation_is_rgb_zero_to_255_mean_std():
    data = encode(300, 301, fmt="PNG")
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    got = preprocess.build(Params(resize_short=224, crop=224))(data)
    top = int(round((301 - 224) / 2.0))
    # 300x301 -> short side 300 -> 224, long 224.746 -> 224 (truncated): the image becomes square
    resized = np.asarray(Image.fromarray(rgb).resize((224, int(224 * 301 / 300)), Image.BICUBIC))
    crop = resized[max(0, int(round((resized.shape[0] - 224) / 2.0))):][:224]
    expected = ((crop.astype(np.float64) - [123.675, 116.28, 103.53]) * (1 / np.array([58.395, 57.12, 57.375])))
    assert top >= 0
    assert np.allclose(got.transpose(1, 2, 0), expected, atol=1e-4)


def test_efficientnet_style_crop_side_is_truncated():
    """500x375: crop side 256/288*375 = 333.33; mmcv's int32 box keeps 333 pixels from offset round(83.33)."""
    bgr = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    x1, y1 = int(round((500 - 333.333) / 2)), int(round((375 - 333.333) / 2))
    expected = np.asarray(Image.fromarray(bgr[y1:y1 + 333, x1:x1 + 333]).resize((256, 256), Image.BICUBIC))
    assert (x1, y1) == (83, 21)
    assert np.array_equal(mmcls.center_crop(bgr, RESNEST), expected)


def test_efficientnet_style_on_every_shared_image_matches_the_formula(sample_root):
    for path in sorted(sample_root.glob("*/*.JPEG")):
        bgr = decode_bgr(path.read_bytes())
        h, w = bgr.shape[:2]
        side = 256 / 288 * min(h, w)
        y1, x1 = int(round((h - side) / 2)), int(round((w - side) / 2))
        crop = bgr[y1:int(min(h, y1 + side) - 1) + 1, x1:int(min(w, x1 + side) - 1) + 1]
        expected = np.asarray(Image.fromarray(crop).resize((256, 256), Image.BICUBIC))
        assert np.array_equal(mmcls.center_crop(bgr, RESNEST), expected), path.name


def test_cv2_decode_applies_exif_orientation():
    data = encode(64, 32, orientation=6)  # rotate 90 on display
    assert decode_bgr(data).shape[:2] == (64, 32)
    assert np.asarray(Image.open(io.BytesIO(data))).shape[:2] == (32, 64)


def test_greyscale_png_decodes_to_three_channels():
    assert preprocess.build(CSP)(encode(300, 300, mode="L")).shape == (3, 256, 256)


def test_both_crop_modes_at_once_is_a_user_error():
    with pytest.raises(Exception, match="either resize_short"):
        Params(resize_short=256, efficientnet_style=True)
