"""Reduced precision on ONNX Runtime CPU: accuracy of fp16 and int8 (each calibration method) against fp32,
and the peak memory of int8 calibration.

    python benchmarks/precision.py

Accuracy: tf_efficientnet_lite0 (real weights) on the 200 shared photos, int8 calibrated on a separate set
(the photos scikit-image ships), simulated Q/DQ and ONNX Runtime's int8 kernels. Memory: the transform alone,
in its own process, calibrating on 1000 images (the shared 200 and four flipped/cropped variants of each)
with each method. Writes benchmarks/results/<date>-<host>-precision.md. Run by hand, never in CI.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"
METHODS = ("minmax", "entropy", "percentile")


def calibration_photos(root: Path) -> Path:
    """The photos scikit-image ships (not ImageNet validation images), one per wnid folder."""
    import skimage

    from evalkit.classes import imagenet1k

    photos = sorted(p for p in (Path(skimage.__file__).parent / "data").iterdir()
                    if p.suffix in (".png", ".jpg") and p.stat().st_size > 30_000)
    for wnid, photo in zip(imagenet1k().wnids, photos):
        (root / wnid).mkdir(parents=True)
        (root / wnid / photo.name).write_bytes(photo.read_bytes())
    return root


def thousand_images(root: Path) -> Path:
    """The shared 200 and four variants of each (mirrored, and three crops), as JPEGs in their wnid folders."""
    from PIL import Image, ImageOps

    for path in sorted(SAMPLE.glob("*/*.JPEG")):
        image = Image.open(path).convert("RGB")
        w, h = image.size
        variants = [image, ImageOps.mirror(image), image.crop((0, 0, w * 3 // 4, h * 3 // 4)),
                    image.crop((w // 4, h // 4, w, h)), image.crop((w // 8, 0, w * 7 // 8, h))]
        (root / path.parent.name).mkdir(parents=True, exist_ok=True)
        for k, v in enumerate(variants):
            v.save(root / path.parent.name / f"{path.stem}_{k}.JPEG", quality=90)
    return root


def evaluate(results: Path, cache: Path, *overrides: str) -> dict:
    """One evalkit run in its own process; its run.json."""
    before = set(results.glob("*/run.json")) if results.is_dir() else set()
    env = dict(os.environ, EVALKIT_CACHE=str(cache))
    subprocess.run([sys.executable, "-m", "evalkit", "dataset=imagefolder", f"dataset.root={SAMPLE}",
                    f"results.dir={results}", "results.history=", "progress=false", *overrides],
                   check=True, env=env, capture_output=True, text=True)
    (new,) = set(results.glob("*/run.json")) - before
    return json.loads(new.read_text())


def transform_peak(cache: Path, root: Path, method: str) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of the int8 transform alone, calibrating on every image under ``root``."""
    code = ("from evalkit.config import compose, cache_dir; from evalkit.plugins import make_context; "
            "from evalkit import preprocess; import sys; "
            f"cfg = compose(['precision=int8', 'precision.calibration.root={root}', 'precision.calibration.size=1000', "
            f"'precision.calibration.method={method}', 'cache_dir={cache}']); "
            "make_context(cfg.model, preprocess.build(cfg.preprocess), cache_dir(cfg), [], None, cfg.precision).onnx_file()")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, EVALKIT_CACHE=str(cache)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"the {method} transform failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    from evalkit import compare
    from evalkit.contract import cpu_isa

    with tempfile.TemporaryDirectory(prefix="evalkit-precision-") as tmp:
        tmp = Path(tmp)
        cache, results = tmp / "cache", tmp / "results"
        photos = calibration_photos(tmp / "calibration")
        n_photos = len(list(photos.glob("*/*")))
        runs = {"fp32": evaluate(results, cache), "fp16": evaluate(results, cache, "precision=fp16")}
        for method in METHODS:
            runs[f"int8 {method}"] = evaluate(results, cache, "precision=int8", f"precision.calibration.root={photos}",
                                              f"precision.calibration.method={method}")
        runs["int8 minmax, int8 kernels"] = evaluate(results, cache, "precision=int8", "runtime.int8_kernels=true",
                                                     f"precision.calibration.root={photos}")
        paths = {name: results / run["id"] for name, run in runs.items()}
        table = compare.versus(compare.load(list(paths.values())), paths["fp32"])
        table.insert(0, "run", list(runs))

        big = thousand_images(tmp / "thousand")
        memory = {method: transform_peak(tmp / f"cache-{method}", big, method) for method in METHODS}

    lines = [f"# Precision on ONNX Runtime CPU ({datetime.now(timezone.utc):%Y-%m-%d})", "",
             f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"CPU ISA {cpu_isa()}. Command: `python benchmarks/precision.py`.", "",
             f"tf_efficientnet_lite0 on the 200 shared photos; int8 calibrated on {n_photos} "
             "photos scikit-image ships (a separate set).", "",
             "| run | executed | top-1 | top-5 | Δ top-1 vs fp32 | agreement % | McNemar p | most changed classes |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['run']} | {r['executed']} | {r['top1']:.1f} | {r['top5']:.1f} | {r['delta_top1']:+.1f} | "
                     f"{r['agreement']:.1f} | {r['mcnemar_p']:.2f} | {r['most_changed']} |")
    lines += ["", "int8 calibration alone on 1000 images (batch 16), its own process:", "",
              "| method | peak RSS MiB | seconds |", "|---|---|---|"]
    lines += [f"| {m} | {rss:.0f} | {s:.0f} |" for m, (rss, s) in memory.items()]
    text = "\n".join(lines) + "\n"
    out = REPO / "benchmarks" / "results" / f"{datetime.now(timezone.utc):%Y%m%d}-{platform.node()}-precision.md"
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
