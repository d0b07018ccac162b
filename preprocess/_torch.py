"""The families' work on torch tensors, for runtimes that take pixels on their GPU (issue 16).

Normalisation: a batch travels as uint8 (a quarter of the float32 bytes) and becomes float on the
device. The values must equal ``normalize``'s bit for bit, so each function repeats its family's IEEE
float32 operations in the same order. Constants are tensors on the batch's device: PyTorch's CUDA
division by a host scalar multiplies by its reciprocal instead, which rounds differently. These use the
tensor's own methods, no torch import.

Decoding (``dataset.decode=gpu``): ``decode_jpeg`` on the device (nvJPEG on a GPU, libjpeg-turbo on
the CPU). Its pixels differ from PIL's by rounding in the IDCT and chroma upsampling,
so a recipe decoded here is close to the CPU recipe, not equal.
"""

from __future__ import annotations

from typing import Any, Sequence


def _const(like: Any, values: float | Sequence[float]) -> Any:
    """float32 constant(s) on ``like``'s device, shaped to broadcast over NCHW channels."""
    return like.new_tensor(values).reshape(-1, 1, 1)


def chw(pixels: Any, flip_channels: bool = False) -> Any:
    """uint8 NHWC -> float32 NCHW (a new tensor), optionally BGR <-> RGB."""
    x = pixels.permute(0, 3, 1, 2).float()
    return x.flip(1) if flip_channels else x


def divide_subtract_divide(pixels: Any, divisor: float, mean: Sequence[float], std: Sequence[float]) -> Any:
    """(x / divisor - mean) / std: torchvision's ToTensor + Normalize."""
    x = chw(pixels)
    x.div_(_const(x, divisor)).sub_(_const(x, mean)).div_(_const(x, std))
    return x


def scale_subtract_divide(pixels: Any, scale: float, mean: Sequence[float], std: Sequence[float]) -> Any:
    """(x * scale - mean) / std: PaddleClas's NormalizeImage and the square-resize flows."""
    x = chw(pixels)
    x.mul_(_const(x, scale)).sub_(_const(x, mean)).div_(_const(x, std))
    return x


def decode_rgb(data: list[bytes], device: str) -> list[Any]:
    """Each image as a uint8 CHW RGB tensor on ``device``, or a str saying why it could not be decoded.

    One batched ``decode_jpeg`` call (what makes nvJPEG fast); where it fails, image by image, and an image
    it cannot read (PNG, CMYK JPEG) is decoded on the CPU and moved there. TorchCodec's decoders where it is
    installed (torchvision 0.29 deprecates its own in their favour; on the CPU both give the same pixels).
    """
    import numpy as np
    import torch

    try:
        from torchcodec.decoders import decode_image, decode_jpeg
    except ImportError:
        from torchvision.io import decode_image, decode_jpeg

    encoded = [torch.from_numpy(np.frombuffer(d, np.uint8).copy()) for d in data]
    try:
        return list(decode_jpeg(encoded, mode="RGB", device=device))
    except (RuntimeError, ValueError):
        pass
    images: list[Any] = []
    for one in encoded:
        try:
            images.append(decode_jpeg(one, mode="RGB", device=device))
        except (RuntimeError, ValueError):
            try:
                images.append(decode_image(one, mode="RGB").to(device))
            except (RuntimeError, ValueError) as e:
                images.append(f"cannot decode image: {str(e).splitlines()[0]}")
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
