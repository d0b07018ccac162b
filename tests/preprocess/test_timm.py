"""The timm recipe is bit-exact with timm's own eval transform."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evalkit import preprocess
from evalkit.errors import UserError
from evalkit.preprocess._pil import Interpolation
from evalkit.preprocess.timm import Params, scale_size

timm_data = pytest.importorskip("timm.data", reason="parity with timm needs evalkit[torch]")

# (size, crop_pct, interpolation, mean, std) of the demo model and of the CSPNet default cfg
SETTINGS = [
    (224, 0.875, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    (256, 0.887, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
]


def timm_transform(size, crop_pct, interp, mean, std):
    return timm_data.create_transform(input_size=(3, size, size), crop_pct=crop_pct, interpolation=interp,
                                      mean=mean, std=std, is_training=False)


def recipe(size, crop_pct, interp, mean, std):
    return preprocess.build(Params(size=size, crop_pct=crop_pct, interpolation=Interpolation[interp],
                                   mean=list(mean), std=list(std)))


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"{s[0]}-{s[1]}-{s[2]}")
def test_bit_exact_with_timm_on_every_shared_image(sample_root, setting):
    ours, theirs = recipe(*setting), timm_transform(*setting)
    paths = sorted(sample_root.glob("*/*.JPEG"))
    assert len(paths) == 200
    for path in paths:
        expected = theirs(Image.open(path).convert("RGB")).numpy()
        got = ours(path.read_bytes())
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got, expected), path.name


def png(w: int, h: int, mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("w,h", [(301, 227), (227, 301), (256, 256), (257, 999), (1001, 288), (224, 224)])
def test_odd_sizes_truncation_and_half_even_offsets_match_timm(w, h):
    """Odd differences hit torchvision's round-half-even crop offset; long sides hit its truncation."""
    setting = SETTINGS[1]
    data = png(w, h)
    expected = timm_transform(*setting)(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
    assert np.array_equal(recipe(*setting)(data), expected)


def test_greyscale_becomes_three_channels_like_timm():
    data = png(300, 200, mode="L")
    expected = timm_transform(*SETTINGS[0])(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
    got = recipe(*SETTINGS[0])(data)
    assert got.shape == (3, 224, 224) and np.array_equal(got, expected)


def test_scale_size_is_floor_of_size_over_crop_pct():
    assert scale_size(Params(size=256, crop_pct=0.887)) == 288
    assert scale_size(Params(size=320, crop_pct=0.909)) == 352
    assert scale_size(Params(size=416, crop_pct=0.928)) == 448
    assert scale_size(Params(size=224, crop_pct=0.875)) == 256


def test_crop_pct_outside_zero_one_is_a_user_error():
    with pytest.raises(UserError, match="crop_pct"):
        Params(crop_pct=1.2)


def test_undecodable_bytes_are_a_user_error():
    with pytest.raises(UserError, match="cannot decode"):
        recipe(*SETTINGS[0])(b"not an image")


def test_fingerprint_changes_with_parameters_and_is_stable():
    a, b = recipe(*SETTINGS[0]), recipe(*SETTINGS[1])
    assert a.fingerprint == recipe(*SETTINGS[0]).fingerprint
    assert a.fingerprint != b.fingerprint
