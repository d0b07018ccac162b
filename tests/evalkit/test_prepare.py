"""``dataset.decode=gpu``'s batch source, run here with torchvision's CPU decoder in place of nvJPEG."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from evalkit import pipeline, preprocess
from evalkit.config import cache_dir, compose
from evalkit.contract import Runtime
from evalkit.dataset import load
from evalkit.errors import UserError
from evalkit.plugins import make_context, open_runtime
from evalkit.prepare import DeviceDecoded
from evalkit.scoring import Scorer

torch = pytest.importorskip("torch", reason="dataset.decode=gpu needs PyTorch and torchvision (evalkit[torch])")


def photos(root, *overrides):
    cfg = compose(["model=demo", "dataset=imagefolder", f"dataset.root={root}", *overrides])
    return cfg, load(cfg.dataset), preprocess.build(cfg.preprocess)


def test_batches_are_the_recipes_sizes_and_the_files_digests(sample_root):
    _, samples, recipe = photos(sample_root, "dataset.limit=12")
    source = DeviceDecoded(samples, recipe, "cpu")
    try:
        batch = source.batch(0, 12)
    finally:
        source.close()
    assert batch.dtype == torch.uint8 and tuple(batch.shape) == (12, 224, 224, 3)
    assert [bytes(d) for d in source.digest] == [hashlib.sha256(s.path.read_bytes()).digest() for s in samples]
    # close to the recipe's own pixels, not equal: this is why the run records bit_exact=false
    want = np.stack([recipe.pixels_fn(s.path.read_bytes()) for s in samples]).astype(int)
    diff = np.abs(batch.numpy().astype(int) - want)
    assert 0 < (diff > 0).mean() < 0.01 and diff.max() <= 3


def test_an_undecodable_image_fails_naming_it_or_counts_as_wrong(sample_root, tmp_path):
    root = tmp_path / "val"
    for folder in sorted(sample_root.iterdir())[:3]:
        shutil.copytree(folder, root / folder.name)
    broken = sorted(root.rglob("*.JPEG"))[1]
    broken.write_bytes(b"not a jpeg")
    _, samples, recipe = photos(root)
    source = DeviceDecoded(samples, recipe, "cpu")
    with pytest.raises(UserError, match=f"{broken.name}.*dataset.bad_images=count_wrong"):
        source.batch(0, len(samples))
    source.close()

    source = DeviceDecoded(samples, recipe, "cpu", bad_images="count_wrong")
    batch = source.batch(0, len(samples))
    source.close()
    assert list(source.bad) == [1] and "cannot decode" in source.bad[1]
    assert not batch[1].any() and batch[0].any()

    sorted(root.rglob("*.JPEG"))[2].unlink()  # gone after the listing
    source = DeviceDecoded(samples, recipe, "cpu", bad_images="count_wrong")
    batch = source.batch(0, len(samples))
    source.close()
    assert sorted(source.bad) == [1, 2] and source.bad[2].startswith("cannot read")
    assert not batch[2].any() and not source.digest[2].any() and source.digest[0].any()


class PixelsOnTheCpu(Runtime):
    """A GPU runtime's side of the pixel path on the CPU: the recipe's normalize_torch, then a real ORT session."""

    takes_pixels = True
    decode_device = "cpu"

    def __init__(self, inner: Runtime, recipe) -> None:
        self.inner, self.recipe = inner, recipe

    def infer(self, batch):
        return self.inner(self.recipe.normalize_torch(batch).numpy())


def test_the_decoded_path_scores_like_the_cpu_recipe(sample_root, lite0_onnx):
    """On the 200 shared photos torchvision's decode and tensor resize change no top-1 prediction of lite0
    (logits move by up to ~0.07); nvJPEG's own rounding differs again and is measured only on a GPU."""
    cfg, samples, recipe = photos(sample_root, f"model.onnx={lite0_onnx}")
    runtime = open_runtime(cfg.runtime, make_context(cfg.model, recipe, cache_dir(cfg), samples))
    try:
        cpu = pipeline.evaluate(samples, recipe, runtime, 32, Scorer(["topk"], 1000), progress=False)
        decoded = pipeline.evaluate(samples, recipe, PixelsOnTheCpu(runtime, recipe), 32, Scorer(["topk"], 1000),
                                    progress=False, decode_device="cpu")
    finally:
        runtime.close()
    a, b = cpu.scorer.result(), decoded.scorer.result()
    assert (a.predictions["pred1"] != b.predictions["pred1"]).sum() <= 2
    assert abs(a.metrics["top1"] - b.metrics["top1"]) <= 1.0
    assert np.array_equal(cpu.digests, decoded.digests)
