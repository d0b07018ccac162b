"""The timm recipe is bit-exact with timm's own eval transform."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from evalkit import preprocess
from evalkit.config import compose
from evalkit.contract import params_dict
from evalkit.errors import UserError
from evalkit.preprocess._pil import Interpolation
from evalkit.preprocess.timm import Params, output_shape, scale_size

timm_data = pytest.importorskip("timm.data", reason="parity with timm needs evalkit[torch]")

# (size, crop_pct, interpolation, mean, std) of the demo model and of the CSPNet default cfg
SETTINGS = [
    (224, 0.875, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    (256, 0.887, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
]


# size: an int (square: the recipe's size key) or (H, W) (its input_size key)
def timm_transform(size, crop_pct, interp, mean, std, crop_mode="center"):
    hw = size if isinstance(size, tuple) else (size, size)
    return timm_data.create_transform(input_size=(3, *hw), crop_pct=crop_pct, crop_mode=crop_mode,
                                      interpolation=interp, mean=mean, std=std, is_training=False)


def recipe(size, crop_pct, interp, mean, std, crop_mode="center"):
    shape = {"input_size": [3, *size]} if isinstance(size, tuple) else {"size": size}
    return preprocess.build(Params(**shape, crop_pct=crop_pct, crop_mode=crop_mode,
                                   interpolation=Interpolation[interp], mean=list(mean), std=list(std)))


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


# crop mode x input size (square, wider, taller) x crop_pct x interpolation; bicubic goes with mean 0.5, whose
# border fill 255 * 0.5 = 127.5 tests timm's round half to even
MODES = [(mode, hw, pct, interp, mean, std)
         for mode, hw, pct, (interp, mean, std) in itertools.product(
             ("center", "squash", "border"), ((224, 224), (224, 256), (256, 224)), (0.875, 1.0),
             (SETTINGS[0][2:], SETTINGS[1][2:]))]


@pytest.fixture(scope="module")
def subset(sample_root) -> list[tuple[bytes, Image.Image]]:
    """Every 6th shared photo plus the greyscale ones, the smallest, the largest, the widest and the tallest."""
    paths = sorted(sample_root.glob("*/*.JPEG"))
    info = {}
    for p in paths:
        with Image.open(p) as img:
            info[p] = (img.mode, *img.size)
    area, aspect = (lambda p: info[p][1] * info[p][2]), (lambda p: info[p][1] / info[p][2])
    chosen = set(paths[::6]) | {p for p in paths if info[p][0] != "RGB"}
    chosen |= {min(paths, key=area), max(paths, key=area), min(paths, key=aspect), max(paths, key=aspect)}
    return [(p.read_bytes(), Image.open(p).convert("RGB")) for p in sorted(chosen)]  # 41 photos


@pytest.mark.parametrize("setting", MODES, ids=lambda s: f"{s[0]}-{s[1][0]}x{s[1][1]}-{s[2]}-{s[3]}")
def test_crop_modes_and_non_square_sizes_are_bit_exact_with_timm(subset, setting):
    """Zero difference in the uint8 image before normalisation and in the float tensor after it; on the subset of
    the shared photos (``subset``) to keep 36 settings quick, the 200 are ``test_bit_exact_with_timm...``'s."""
    mode, hw, *rest = setting
    ours, theirs = recipe(hw, *rest, crop_mode=mode), timm_transform(hw, *rest, crop_mode=mode)
    geometry, to_tensor = theirs.transforms[:-2], theirs.transforms[-2:]  # [...resize, crop], [ToTensor, Normalize]
    for data, img in subset:
        for t in geometry:
            img = t(img)
        got = ours.pixels_fn(data)
        assert got.shape == (*hw, 3) and np.array_equal(got, np.asarray(img))
        expected = to_tensor[1](to_tensor[0](img)).numpy()
        assert np.array_equal(ours.normalize(got), expected)


def png(w: int, h: int, mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["center", "squash", "border"])
@pytest.mark.parametrize("size", [256, (256, 288)])
@pytest.mark.parametrize("w,h", [(301, 227), (227, 301), (256, 256), (257, 999), (1001, 288), (224, 224)])
def test_odd_sizes_truncation_and_half_even_offsets_match_timm(w, h, size, mode):
    """Odd differences hit torchvision's round-half-even crop offset and the odd pixel of a border's padding;
    long sides hit the truncation of Resize(int) and the rounding of ResizeKeepRatio."""
    setting = (size, *SETTINGS[1][1:])
    data = png(w, h)
    expected = timm_transform(*setting, crop_mode=mode)(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
    assert np.array_equal(recipe(*setting, crop_mode=mode)(data), expected)


def test_greyscale_becomes_three_channels_like_timm():
    data = png(300, 200, mode="L")
    expected = timm_transform(*SETTINGS[0])(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
    got = recipe(*SETTINGS[0])(data)
    assert got.shape == (3, 224, 224) and np.array_equal(got, expected)


def test_scale_size_is_floor_of_each_side_over_crop_pct():
    assert scale_size(Params(size=256, crop_pct=0.887)) == (288, 288)
    assert scale_size(Params(size=320, crop_pct=0.909)) == (352, 352)
    assert scale_size(Params(size=416, crop_pct=0.928)) == (448, 448)
    assert scale_size(Params(size=224, crop_pct=0.875)) == (256, 256)
    assert scale_size(Params(input_size=[3, 224, 256], crop_pct=0.875)) == (256, 292)


def test_output_shape_is_the_input_size():
    assert output_shape(Params()) == (3, 224, 224)
    assert output_shape(Params(size=256)) == (3, 256, 256)
    assert output_shape(Params(input_size=[3, 224, 256])) == (3, 224, 256)


def test_a_square_input_size_is_stored_as_size():
    """The same recipe either way, so the same fingerprint (tensor cache, run comparisons)."""
    square = Params(input_size=[3, 256, 256])
    assert (square.size, square.input_size) == (256, None)
    assert preprocess.build(square).fingerprint == preprocess.build(Params(size=256)).fingerprint
    assert Params(size=256, input_size=[3, 256, 256]) == square
    wide = Params(input_size=[3, 224, 256])
    assert (wide.size, wide.input_size) == (None, [3, 224, 256])


def test_size_and_a_different_input_size_are_a_user_error_naming_both():
    with pytest.raises(UserError, match=r"preprocess\.size=224 and preprocess\.input_size=\[3, 224, 256\]"):
        Params(size=224, input_size=[3, 224, 256])
    with pytest.raises(UserError, match="preprocess.size=256 and preprocess.input_size"):
        Params(size=256, input_size=[3, 224, 224])


@pytest.mark.parametrize("input_size", [[224, 224], [1, 224, 224], [3, 0, 224], [3, 224, 224, 1]])
def test_input_size_must_be_three_channels_and_two_sides(input_size):
    with pytest.raises(UserError, match="input_size"):
        Params(input_size=input_size)


def test_bad_crop_mode_is_a_user_error_listing_the_modes():
    with pytest.raises(UserError, match="crop_mode='centre' is not one of center, squash, border"):
        Params(crop_mode="centre")


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
    fingerprints = {recipe(*SETTINGS[0], crop_mode=mode).fingerprint for mode in ("center", "squash", "border")}
    fingerprints |= {recipe((224, 256), *SETTINGS[0][1:]).fingerprint, recipe((256, 224), *SETTINGS[0][1:]).fingerprint}
    assert len(fingerprints) == 5


#: the hashed parameters of Params() and of the default (demo) config before crop_mode and input_size existed
BEFORE = {
    "Params()": {"family": "timm", "size": 224, "crop_pct": 0.875, "interpolation": "bilinear",
                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "default": {"family": "timm", "size": 224, "crop_pct": 0.875, "interpolation": "bicubic",
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
}
#: their fingerprints then, with pillow 13.0.0 (a pillow upgrade changes every fingerprint, on purpose)
BEFORE_FINGERPRINTS = {"Params()": "ea9d8af66d025099", "default": "9042cf881c14aed6"}


@pytest.mark.parametrize("name", ["Params()", "default"])
def test_new_keys_at_their_defaults_leave_existing_fingerprints_unchanged(name):
    """crop_mode and input_size at their defaults stay out of the hashed parameters: the tensor caches, the
    'same recipe' comparisons with old runs and the recipe stored in exported models stay valid."""
    params = Params() if name == "Params()" else compose().preprocess
    assert params_dict(params) == BEFORE[name]
    r = preprocess.build(params)
    if r.libraries == {"pillow": "13.0.0"}:
        assert r.fingerprint == BEFORE_FINGERPRINTS[name]


def test_gpu_decode_refuses_the_border_crop_it_does_not_do():
    pytest.importorskip("torch", reason="dataset.decode=gpu needs PyTorch (evalkit[torch])")
    from evalkit.preprocess.timm import pixels_torch

    with pytest.raises(UserError, match="crop_mode=border.*dataset.decode=cpu"):
        pixels_torch([b""], Params(crop_mode="border"), "cpu")
