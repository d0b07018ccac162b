"""The families' work on torch tensors, for runtimes that take pixels on their GPU (issue 16).

Normalisation: a batch travels as uint8 (a quarter of the float32 bytes) and becomes float on the
device. The values must equal ``normalize``'s bit for bit, so each function repeats its family's IEEE
float32 operations in the same order. Constants are tensors on the batch's device, made once per
device: PyTorch's CUDA division by a host scalar multiplies by its reciprocal instead, which rounds
differently, and a constant copied from the host at every batch would wait for the GPU each time.

Decoding (``dataset.decode=gpu``): torchvision's ``decode_jpeg`` on the device (nvJPEG on a GPU,
libjpeg-turbo on the CPU), without EXIF rotation, as PIL opens an image. Its pixels differ from PIL's by
rounding in the IDCT and chroma upsampling, so a recipe decoded here is close to the CPU recipe, not
equal. (TorchCodec, which torchvision 0.29 deprecates its decoders for, always applies EXIF rotation.)
The work runs on a stream of its own, finished before the batch is handed on: nvJPEG writes on its
own streams into memory allocated on the caller's, which must not be memory the model's kernels
still use.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, Sequence

from evalkit.contract import check_pixels
from evalkit.errors import UserError


@lru_cache(maxsize=64)
def _constant(device: str, values: tuple[float, ...]) -> Any:
    import torch

    return torch.tensor(values, dtype=torch.float32, device=device).reshape(-1, 1, 1)


def const(like: Any, values: float | Sequence[float]) -> Any:
    """float32 constant(s) on ``like``'s device, shaped to broadcast over NCHW channels."""
    return _constant(str(like.device), tuple(map(float, values)) if isinstance(values, Sequence) else (values,))


def chw(pixels: Any, flip_channels: bool = False) -> Any:
    """uint8 NHWC -> float32 NCHW (a new tensor), optionally BGR <-> RGB."""
    x = pixels.permute(0, 3, 1, 2).float()
    return x.flip(1) if flip_channels else x


def divide_subtract_divide(pixels: Any, divisor: float, mean: Sequence[float], std: Sequence[float]) -> Any:
    """(x / divisor - mean) / std: torchvision's ToTensor + Normalize."""
    x = chw(pixels)
    x.div_(const(x, divisor)).sub_(const(x, mean)).div_(const(x, std))
    return x


def scale_subtract_divide(pixels: Any, scale: float, mean: Sequence[float], std: Sequence[float]) -> Any:
    """(x * scale - mean) / std: PaddleClas's NormalizeImage and the square-resize flows."""
    x = chw(pixels)
    x.mul_(const(x, scale)).sub_(const(x, mean)).div_(const(x, std))
    return x


@lru_cache(maxsize=8)
def _side_stream(device: str) -> Any:
    import torch

    return torch.cuda.Stream(device)


@contextmanager
def own_stream(device: str) -> Iterator[None]:
    """Run the block on a CUDA stream of its own and wait for it (nothing to do on the CPU)."""
    import torch

    if torch.device(device).type != "cuda":
        yield
        return
    stream = _side_stream(device)
    with torch.cuda.stream(stream):
        yield
    stream.synchronize()


def decode_rgb(data: list[bytes], device: str) -> list[Any]:
    """Each image as a uint8 CHW RGB tensor on ``device``, or a str saying why it could not be decoded.

    An image whose header declares more pixels than PIL decodes is refused before nvJPEG allocates them
    (``check_pixels``, as every decoder of evalkit).
    """
    refused = [_refused(d) for d in data]
    decoded = iter(_decode([d for d, why in zip(data, refused) if why is None], device))
    return [why if why is not None else next(decoded) for why in refused]


def _refused(data: bytes) -> str | None:
    """Why ``check_pixels`` refuses the image, or None."""
    try:
        check_pixels(data)
    except UserError as e:
        return str(e)
    return None


def _decode(data: list[bytes], device: str) -> list[Any]:
    """One batched ``decode_jpeg`` call (what makes nvJPEG fast); where it fails, image by image, and an image
    it cannot read (PNG, CMYK JPEG) is decoded on the CPU and moved there."""
    import numpy as np
    import torch
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    rgb = ImageReadMode.RGB
    encoded = [torch.from_numpy(np.frombuffer(d, np.uint8).copy()) for d in data]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's, in favour of TorchCodec: see above
        try:
            return list(decode_jpeg(encoded, mode=rgb, device=device, apply_exif_orientation=False))
        except (RuntimeError, ValueError):
            pass
        images: list[Any] = []
        for one in encoded:
            try:
                images.append(decode_jpeg(one, mode=rgb, device=device, apply_exif_orientation=False))
            except (RuntimeError, ValueError):
                try:
                    images.append(decode_image(one, mode=rgb, apply_exif_orientation=False).to(device))
                except (RuntimeError, ValueError) as e:  # "decode_jpeg, /build/path.cpp:171, Image is truncated"
                    images.append(f"cannot decode image: {str(e).splitlines()[0].rsplit(', ', 1)[-1]}")
    return images


def stack_nhwc(images: list[Any], shape: tuple[int, int, int], device: str) -> tuple[Any, dict[int, str]]:
    """The prepared CHW images as one uint8 NHWC batch; a str in ``images`` (a failed image) becomes a zero row."""
    import torch

    batch = torch.zeros((len(images), *shape), dtype=torch.uint8, device=device)
    failed = {}
    for i, image in enumerate(images):
        if isinstance(image, str):
            failed[i] = image
        else:
            batch[i] = image.permute(1, 2, 0)
    return batch, failed
