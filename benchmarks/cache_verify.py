"""What verifying the tensor cache's rows costs a warm run: reading every row with and without its checksum.

    python benchmarks/cache_verify.py                # the 200 shared photos
    python benchmarks/cache_verify.py --images 1000  # the shared 200, repeated

Fills a tensor cache with one cold run of the demo model, times warm runs (their evaluation loop, from
run.json's timing, and their wall time with the process start), then reads every row of that cache in this
process, in the warm run's batches, once verified (``TensorCache.read``: pread + BLAKE2b + compare) and once
not (pread alone), best of several passes over the page-cached file. The difference is the verification's cost;
its share of the warm run is the target (under 2 %). Writes benchmarks/results/<date>-cache-verify.md.
Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from throughput import BATCH, REPO, SAMPLE, evalkit_command, machine, make_folder, timed

if TYPE_CHECKING:
    from evalkit.tensorcache import TensorCache

PASSES = 5


def read_rows(cache: TensorCache, verify: bool) -> float:
    """Seconds to read every row of ``cache`` in batches, verified or not; best of PASSES."""
    best = float("inf")
    fd = os.open(cache.data, os.O_RDONLY)
    try:
        for _ in range(PASSES):
            start = time.perf_counter()
            for i in range(cache.n):
                if verify:
                    assert cache.read(fd, i) is not None
                else:
                    os.pread(fd, cache.row_bytes, i * cache.row_bytes)
            best = min(best, time.perf_counter() - start)
    finally:
        os.close(fd)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    if not SAMPLE.is_dir():
        raise SystemExit(f"needs the shared images at {SAMPLE}")
    sys.path.insert(0, str(REPO))
    from evalkit import preprocess
    from evalkit.config import cache_dir, compose
    from evalkit.dataset import load
    from evalkit.export import onnx_file
    from evalkit.tensorcache import TensorCache

    cfg = compose()
    onnx = str(onnx_file(cfg.model, preprocess.build(cfg.preprocess), cache_dir(cfg)))
    with tempfile.TemporaryDirectory(prefix="evalkit-bench-") as tmp:
        root = SAMPLE if args.images == 200 else make_folder(args.images, Path(tmp) / "data")
        tensors, results = Path(tmp) / "tensors", Path(tmp) / "r"
        command = evalkit_command(root, onnx, tensors, results)
        cold = timed(command)
        warm_wall, warm_loop = [], []
        for _ in range(args.warm_runs):
            warm_wall.append(timed(command)["wall"])
            newest = max(results.glob("*/run.json"), key=lambda p: p.stat().st_mtime_ns)
            run = json.loads(newest.read_text())
            assert not [w for w in run["warnings"] if "tensor cache" in w], run["warnings"]
            warm_loop.append(run["timing"]["seconds"])
        data = compose(["dataset=imagefolder", f"dataset.root={root}"])
        cache = TensorCache(tensors, preprocess.build(data.preprocess), load(data.dataset))
        assert cache.missing(load(data.dataset)) == [], "the cold run left rows unmade"
        plain, verified = read_rows(cache, verify=False), read_rows(cache, verify=True)

    cost = verified - plain
    loop, wall = statistics.median(warm_loop), statistics.median(warm_wall)
    lines = [f"# Tensor-cache verification cost, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} when it ended (a shared VM)", "",
             f"Command: `python benchmarks/cache_verify.py --images {args.images} --warm-runs {args.warm_runs}`", "",
             f"Model tf_efficientnet_lite0 (ONNX Runtime CPU, default sessions), timm recipe 224/0.875, batch {BATCH}; "
             f"{args.images} images ({cache.row_bytes} bytes a row, {cache.n * cache.row_bytes / 2**20:.0f} MiB of "
             "cache); the reads below are of the page-cached file, as in a warm run.", "",
             "| measure | seconds |", "|---|---|",
             f"| cold run (fills the cache), wall | {cold['wall']:.2f} |",
             f"| warm run, wall (median of {args.warm_runs}, process start included) | {wall:.2f} |",
             f"| warm run, evaluation loop (run.json timing, median) | {loop:.2f} |",
             f"| every row read, pread alone (best of {PASSES}) | {plain:.4f} |",
             f"| every row read and verified, TensorCache.read (best of {PASSES}) | {verified:.4f} |",
             f"| verification (the difference) | {cost:.4f} ({cost / cache.n * 1e3:.3f} ms a row) |", "",
             f"Verification's share of the warm run: {cost / loop * 100:.2f} % of its evaluation loop, "
             f"{cost / wall * 100:.2f} % of its wall time (target: under 2 %).",
             "A warm run verifies in its batch helper thread, beside inference: this is the most it adds."]
    text = "\n".join(lines)
    print(text)
    out = REPO / "benchmarks" / "results" / f"{datetime.now(timezone.utc):%Y%m%d}-cache-verify.md"
    out.write_text(text + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
