"""End-to-end CPU throughput: evalkit against timm's own onnx_validate.py on the same images, model and recipe.

    git clone https://github.com/huggingface/pytorch-image-models /tmp/timm   # timm's scripts live in its repository
    python benchmarks/throughput.py --timm-repo /tmp/timm                     # 1000 images (the shared 200, repeated)
    python benchmarks/throughput.py --timm-repo /tmp/timm --images 1000 10000  # also checks that memory stays flat

Reports images/s, wall and CPU seconds, per-stage cost (decode+recipe, inference, both measured
single-threaded), the ideal wall time (total core-seconds / cores) and the fraction of it each pipeline
reaches, peak memory, and the evalkit/timm ratio. timm's script runs unchanged from the checkout
(``onnx_validate.py DIR --onnx-input M -b 32 -j CORES`` with the model's recipe); each pipeline runs in its
own process. Writes benchmarks/results/<date>-<host>.md. Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
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


def timed(cmd: list[str]) -> dict:
    """Run a command: its wall seconds, CPU seconds and peak RSS (its own and every process it waited for)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        if status:
            raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{err.read()[-3000:]}")
        return {"wall": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
                "stdout": out.read()}


def timm_onnx_validate(repo: Path, root: Path, onnx: str, workers: int) -> list[str]:
    """The command line of timm's own script for this model's recipe (224, crop 0.875, bicubic, mean = std = 0.5)."""
    return [sys.executable, str(repo / "onnx_validate.py"), str(root), "--onnx-input", onnx, "-b", str(BATCH),
            "-j", str(workers), "--img-size", "224", "--crop-pct", "0.875", "--interpolation", "bicubic",
            "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5", "--print-freq", "1000"]


def evalkit_command(root: Path, onnx: str, cache: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "evalkit", f"model.onnx={onnx}", "dataset=imagefolder", f"dataset.root={root}",
            f"results.dir={results}", "results.history=", "progress=false", f"cache.dir={cache}",
            f"runtime.batch_size={BATCH}", *extra]


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
    """The stage costs, measured in this (fresh) process; prints JSON."""
    print("RESULT " + json.dumps(stage_costs(Path(args.root), args.onnx, args.n)))


def measure_stages(root: Path, onnx: str, n: int) -> dict:
    out = timed([sys.executable, __file__, "--child", "stages", "--root", str(root), "--onnx", onnx, "--n", str(n)])
    return json.loads(next(ln[7:] for ln in out["stdout"].splitlines() if ln.startswith("RESULT ")))


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
    parser.add_argument("--timm-repo", type=Path, help="a checkout of huggingface/pytorch-image-models")
    parser.add_argument("--child"), parser.add_argument("--root"), parser.add_argument("--onnx")
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if not SAMPLE.is_dir():
        raise SystemExit(f"needs the shared images at {SAMPLE}")
    if args.timm_repo and not (args.timm_repo / "onnx_validate.py").is_file():
        raise SystemExit(f"--timm-repo {args.timm_repo}: no onnx_validate.py there; give a pytorch-image-models checkout")
    sys.path.insert(0, str(REPO))
    from evalkit import preprocess
    from evalkit.config import cache_dir, compose
    from evalkit.contract import cpu_cores
    from evalkit.export import onnx_file

    cfg = compose()
    onnx = str(onnx_file(cfg.model, preprocess.build(cfg.preprocess), cache_dir(cfg)))
    cores = cpu_cores()
    command = "python benchmarks/throughput.py" + (" --timm-repo TIMM" if args.timm_repo else "") + \
        f" --images {' '.join(map(str, args.images))}"
    lines = [f"# evalkit throughput benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {machine()}", "",
             "Model tf_efficientnet_lite0 (ONNX, ONNX Runtime CPU), timm recipe 224/0.875 bicubic, batch 32.",
             f"Command: `{command}`" + (f" (timm checkout at {timm_commit(args.timm_repo)})" if args.timm_repo else
                                         "; timm's onnx_validate.py not run (no --timm-repo)"), ""]
    record = {}
    with tempfile.TemporaryDirectory(prefix="evalkit-bench-") as tmp:
        for n in args.images:
            root = make_folder(n, Path(tmp) / f"data-{n}")
            cache, results = Path(tmp) / f"tensors-{n}", Path(tmp) / "r"
            stages = measure_stages(root, onnx, n)
            ideal = (stages["decode_core_s"] + stages["infer_core_s"]) / cores
            rows = {}
            if args.timm_repo and n <= 1000:
                rows["timm onnx_validate.py -j cores"] = timed(timm_onnx_validate(args.timm_repo, root, onnx, cores))
            rows["evalkit cold, default (one 1-thread session per core)"] = timed(evalkit_command(root, onnx, cache, results))
            rows["evalkit cold, one session (ORT threads)"] = timed(
                evalkit_command(root, onnx, Path(tmp) / f"tensors1-{n}", results, "runtime.sessions=1"))
            rows["evalkit warm (tensor cache), default"] = timed(evalkit_command(root, onnx, cache, results))
            rows["evalkit warm, runtime=openvino (THROUGHPUT hint)"] = timed(
                evalkit_command(root, onnx, cache, results, "runtime=openvino"))
            lines += [f"## {n} images", "",
                      f"- decode + recipe: {stages['decode_core_s']:.1f} core-s; inference: {stages['infer_core_s']:.1f} core-s "
                      f"(single-threaded); ideal wall on {cores} cores: {ideal:.1f} s",
                      f"- pure inference (ORT default threads, batch 32, tensors ready): "
                      f"{stages['pure_inference_images_per_s']:.1f} img/s", "",
                      "| pipeline | wall s | img/s | CPU s | of ideal | peak MB (largest process) |",
                      "|---|---|---|---|---|---|"]
            for name, r in rows.items():
                lines.append(f"| {name} | {r['wall']:.1f} | {n / r['wall']:.1f} | {r['cpu_s']:.1f} | "
                             f"{ideal / r['wall'] * 100:.0f}% | {r['peak_mb']:.0f} |")
            timm = rows.get("timm onnx_validate.py -j cores")
            cold = rows["evalkit cold, default (one 1-thread session per core)"]
            if timm:
                lines.append(f"\nevalkit cold / timm onnx_validate.py throughput: {timm['wall'] / cold['wall']:.2f}x")
            lines.append("")
            record[n] = {"stages": stages, "ideal_s": ideal,
                         "rows": {k: {kk: vv for kk, vv in v.items() if kk != "stdout"} for k, v in rows.items()}}
    text = "\n".join(lines)
    print(text)
    out = REPO / "benchmarks" / "results" / f"{datetime.now(timezone.utc):%Y%m%d}-{platform.node() or 'host'}.md"
    out.write_text(text + "\n\n```json\n" + json.dumps(record, indent=1) + "\n```\n")
    print(f"wrote {out}")


def timm_commit(repo: Path) -> str:
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or str(repo)


if __name__ == "__main__":
    main()
