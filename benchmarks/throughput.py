"""End-to-end CPU throughput: evalkit against a timm-style pipeline on the same images, model and recipe.

    python benchmarks/throughput.py                    # 1000 images (the shared 200, repeated)
    python benchmarks/throughput.py --images 1000 10000  # also checks that peak memory stays flat

Reports images/s, per-stage cost (decode+recipe, inference, both measured single-threaded),
the ideal wall time (total core-seconds / cores) and the fraction of it each pipeline
reaches, peak memory, and the evalkit/timm ratio. Each pipeline runs in its own process.
Writes benchmarks/results/<date>-<host>.md. Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"
BATCH = 32


def make_folder(n: int, root: Path) -> Path:
    """n images in synset folders: the shared 200 repeated under new names (symlinks)."""
    images = sorted(SAMPLE.glob("*/*.JPEG"))
    for k in range(n):
        src = images[k % len(images)]
        dst = root / src.parent.name / f"{src.stem}_{k // len(images)}.JPEG"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(src)
    return root


def peak_mb() -> dict[str, float]:
    kb = lambda who: resource.getrusage(who).ru_maxrss / 1024  # noqa: E731  (Linux: KiB)
    return {"main": kb(resource.RUSAGE_SELF), "largest_child": kb(resource.RUSAGE_CHILDREN)}


def run_timm_style(root: Path, onnx: str, workers: int) -> dict:
    """What timm's onnx_validate.py does: torch DataLoader + timm transform in worker processes, ORT session."""
    import onnxruntime
    import torch
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    transform = create_transform(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic",
                                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    loader = torch.utils.data.DataLoader(ImageFolder(str(root), transform=transform), batch_size=BATCH,
                                         num_workers=workers, shuffle=False)
    session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    start, n = time.perf_counter(), 0
    for x, _ in loader:
        session.run(None, {"input": x.numpy()})
        n += len(x)
    return {"seconds": time.perf_counter() - start, "images": n}


def run_evalkit(root: Path, onnx: str, cache: Path, results: Path, extra: list[str]) -> dict:
    from evalkit.config import compose
    from evalkit.run import evaluate

    start = time.perf_counter()
    run_dir = evaluate(compose([f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={root}",
                                f"results.dir={results}", "results.history=", "progress=false",
                                f"cache.dir={cache}", f"runtime.batch_size={BATCH}", *extra]))
    run = json.loads((run_dir / "run.json").read_text())
    return {"seconds": time.perf_counter() - start, "images": run["metrics"]["n"], "top1": run["metrics"]["top1"]}


def stage_costs(root: Path, onnx: str, n: int) -> dict:
    """Single-threaded core-seconds for n images: decode+recipe, and inference."""
    import numpy as np
    import onnxruntime

    from evalkit import preprocess
    from evalkit.config import compose

    recipe = preprocess.build(compose().preprocess)
    files = sorted(root.glob("*/*.JPEG"))[:200]
    start = time.process_time()
    arrays = [recipe(f.read_bytes()) for f in files]
    decode = (time.process_time() - start) / len(files)
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    session = onnxruntime.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
    x = np.stack(arrays[:BATCH])
    session.run(None, {"input": x})
    start, reps = time.perf_counter(), 4
    for _ in range(reps):
        session.run(None, {"input": x})
    infer = (time.perf_counter() - start) / (reps * BATCH)
    default = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    default.run(None, {"input": x})
    start = time.perf_counter()
    for _ in range(reps):
        default.run(None, {"input": x})
    pure = reps * BATCH / (time.perf_counter() - start)
    return {"decode_core_s": decode * n, "infer_core_s": infer * n, "pure_inference_images_per_s": pure}


def child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints JSON."""
    root, onnx = Path(args.root), args.onnx
    if args.child == "timm":
        out = run_timm_style(root, onnx, args.workers)
    elif args.child == "stages":
        out = stage_costs(root, onnx, args.n)
    else:
        out = run_evalkit(root, onnx, Path(args.cache), Path(args.results), args.extra)
    out["peak_mb"] = peak_mb()
    print("RESULT " + json.dumps(out))


def measure(kind: str, root: Path, onnx: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--root", str(root), "--onnx", onnx]
    for k, v in kw.items():
        cmd += [f"--{k}", *(v if isinstance(v, list) else [str(v)])]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if out.returncode:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(next(ln[7:] for ln in out.stdout.splitlines() if ln.startswith("RESULT ")))


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    from importlib.metadata import version
    return (f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
            f"onnxruntime {version('onnxruntime')}, torch {version('torch')}, pillow {version('pillow')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000])
    parser.add_argument("--child"), parser.add_argument("--root"), parser.add_argument("--onnx")
    parser.add_argument("--cache"), parser.add_argument("--results"), parser.add_argument("--n", type=int)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--extra", nargs="*", default=[])
    args = parser.parse_args()
    if args.child:
        return child(args)
    if not SAMPLE.is_dir():
        raise SystemExit(f"needs the shared images at {SAMPLE}")
    sys.path.insert(0, str(REPO))
    from evalkit import preprocess
    from evalkit.config import cache_dir, compose
    from evalkit.export import onnx_file

    cfg = compose()
    onnx = str(onnx_file(cfg.model, preprocess.build(cfg.preprocess), cache_dir(cfg)))
    cores = os.cpu_count()
    lines = [f"# evalkit throughput benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {machine()}", "",
             "Model tf_efficientnet_lite0 (ONNX, ONNX Runtime CPU), timm recipe 224/0.875 bicubic, batch 32.",
             f"Command: `python benchmarks/throughput.py --images {' '.join(map(str, args.images))}`", ""]
    record = {}
    with tempfile.TemporaryDirectory(prefix="evalkit-bench-") as tmp:
        for n in args.images:
            root = make_folder(n, Path(tmp) / f"data-{n}")
            cache = Path(tmp) / f"tensors-{n}"
            stages = measure("stages", root, onnx, n=n)
            ideal = (stages["decode_core_s"] + stages["infer_core_s"]) / cores
            timm = measure("timm", root, onnx, workers=cores) if n <= 1000 else None
            cold = measure("evalkit", root, onnx, cache=cache, results=Path(tmp) / "r")
            warm = measure("evalkit", root, onnx, cache=cache, results=Path(tmp) / "r",
                           extra=["runtime.intra_op_threads=0", "runtime.allow_spinning=true"])
            rows = [("timm-style (DataLoader + ORT)", timm), ("evalkit cold (empty cache)", cold),
                    ("evalkit warm (cache from the cold run)", warm)]
            lines += [f"## {n} images", "",
                      f"- decode + recipe: {stages['decode_core_s']:.1f} core-s; inference: {stages['infer_core_s']:.1f} core-s "
                      f"(single-threaded); ideal wall on {cores} cores: {ideal:.1f} s",
                      f"- pure inference (ORT default threads, batch 32, tensors ready): "
                      f"{stages['pure_inference_images_per_s']:.1f} img/s", "",
                      "| pipeline | wall s | img/s | of ideal | peak MB (main / largest child) |", "|---|---|---|---|---|"]
            for name, r in rows:
                if r is None:
                    continue
                lines.append(f"| {name} | {r['seconds']:.1f} | {r['images'] / r['seconds']:.1f} | "
                             f"{ideal / r['seconds'] * 100:.0f}% | {r['peak_mb']['main']:.0f} / {r['peak_mb']['largest_child']:.0f} |")
            if timm:
                lines.append(f"\nevalkit cold / timm-style throughput: {timm['seconds'] / cold['seconds']:.2f}x")
            lines.append(f"evalkit warm / pure inference: "
                         f"{warm['images'] / warm['seconds'] / stages['pure_inference_images_per_s'] * 100:.0f}%\n")
            record[n] = {"stages": stages, "ideal_s": ideal, "timm": timm, "cold": cold, "warm": warm}
    text = "\n".join(lines)
    print(text)
    out = REPO / "benchmarks" / "results" / f"{datetime.now(timezone.utc):%Y%m%d}-{platform.node() or 'host'}.md"
    out.write_text(text + "\n\n```json\n" + json.dumps(record, indent=1) + "\n```\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
