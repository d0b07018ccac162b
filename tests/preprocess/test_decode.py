"""The images the real ImageNet holds, decoded by each recipe the way its source decodes them."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalkit import preprocess
from evalkit.errors import UserError

from ..conftest import PRINT_PEAK_RSS  # noqa: TID252
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


#: the recipes that decode with OpenCV, as their sources do (square's VastAI flow with decoder=cv2): a model of each
OPENCV_RECIPES = {"mmcls": ["model=mmcls/cspresnext50"], "paddle": ["model=ppcls/resnest50"],
                  "square": ["model=mindspore/cspdarknet53", "preprocess.decoder=cv2"]}
BOMB_SIDE = 20_000  # 400 megapixels: 1.2 GB as OpenCV's BGR, past PIL's 179-megapixel limit


def write_bomb(path: Path, side: int = BOMB_SIDE) -> Path:
    """A real, valid PNG of side x side grey pixels, written row by row (never held whole): one colour
    compresses ~1000:1, so a file under a megabyte declares gigabytes of pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    packer, row = zlib.compressobj(9), b"\x00" + b"\x80" * side  # filter "none", then the row's grey values
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = write_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")
    assert path.stat().st_size < 1_000_000
    Image.MAX_IMAGE_PIXELS, limit = None, Image.MAX_IMAGE_PIXELS  # PIL's limit lifted: it reads a well-formed PNG
    try:
        with Image.open(path) as img:
            assert img.size == (BOMB_SIDE, BOMB_SIDE)
            img.verify()  # every chunk's CRC
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return path


@pytest.mark.parametrize("family", OPENCV_RECIPES)
def test_opencv_recipes_refuse_a_decompression_bomb_as_pil_does_without_decoding_it(family, bomb):
    """The header says 400 megapixels: refused before OpenCV allocates them, at PIL's limit, in a child process
    whose peak memory shows nothing was decoded (decoding would take 1.2 GB)."""
    code = f"""
from pathlib import Path
from evalkit import preprocess
from evalkit.config import compose
from evalkit.errors import UserError
recipe = preprocess.build(compose({OPENCV_RECIPES[family]!r}).preprocess)
try:
    recipe(Path({str(bomb)!r}).read_bytes())
except UserError as e:
    print(e)
{PRINT_PEAK_RSS}
"""
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    refusal, peak_kib = child.stdout.splitlines()
    assert refusal.startswith("cannot decode image: Image size (400000000 pixels) exceeds limit of 178956970")
    assert int(peak_kib) < 500_000


@pytest.mark.parametrize("family", OPENCV_RECIPES)
def test_a_decompression_bomb_fails_the_run_by_name_or_counts_wrong(family, bomb, tmp_path):
    from evalkit.config import compose
    from evalkit.run import evaluate

    from ..conftest import tiny_onnx  # noqa: TID252
    from ..evalkit.test_cli import imagefolder  # noqa: TID252

    root = imagefolder(tmp_path, n=3)
    planted = next(root.iterdir()) / "bomb.png"
    planted.symlink_to(bomb)
    args = [*OPENCV_RECIPES[family], f"model.onnx={tiny_onnx(tmp_path / 'm.onnx')}", "model.references=[]",
            "dataset=imagefolder", f"dataset.root={root}", f"results.dir={tmp_path / 'r'}",
            "progress=false", "cache.enabled=false"]
    with pytest.raises(UserError, match=r"bomb.png.*: cannot decode image: Image size \(400000000 pixels\) exceeds"):
        evaluate(compose(args))
    run = json.loads((evaluate(compose([*args, "dataset.bad_images=count_wrong"])) / "run.json").read_text())
    assert run["bad_images"]["count"] == 1 and "exceeds limit" in run["bad_images"]["examples"]["bomb"]
    assert run["metrics"]["n"] == 4 and run["metrics"]["no_prediction"] == 1
