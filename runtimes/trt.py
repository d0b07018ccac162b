"""TensorRT (10 and later): engines built from the ONNX, cached, and run on one GPU.

Build: parse the ONNX, fp32 / fp16 / int8, an optimisation profile over the batch
dimension, a workspace limit and a persistent timing cache. The engine cache is keyed
by the ONNX content, TensorRT version, GPU name and compute capability, precision, batch
range and (int8) calibration set; a hit skips the build, and an engine whose bytes do not
match its recorded hash is rebuilt, not trusted. INT8 calibrates with an entropy
calibrator on a class-balanced subset of the dataset prepared by the run's own recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.contract import Context, PreparedSource, Runtime, Sample, file_sha256, samples_fingerprint
from evalkit.errors import UserError, at_least
from evalkit.runtimes._cuda import Cuda, open_cuda

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class Options:
    name: str = "trt"
    #: batch size of evaluation and of the profile's opt and max shape
    batch_size: int = 32
    precision: str = "fp32"
    #: builder workspace limit, MiB
    workspace_mib: int = 4096
    #: int8: images in the class-balanced calibration subset, and the calibration batch size
    calib_size: int = 1000
    calib_batch: int = 32
    #: batch sizes whose latency is measured after the run (warm-up, then timed batches with sync)
    latency_batches: list[int] = field(default_factory=lambda: [1, 4, 8])
    latency_iters: int = 50

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"runtime.precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        for key in ("batch_size", "workspace_mib", "calib_size", "calib_batch", "latency_iters"):
            at_least(f"runtime.{key}", getattr(self, key), 1)
        if any(b < 1 for b in self.latency_batches):
            raise UserError(f"runtime.latency_batches={self.latency_batches} is out of range: each must be >= 1")


def calibration_subset(samples: list[Sample], size: int) -> list[Sample]:
    """``size`` samples taking classes in turn (first images by id of each), so every class is represented
    as soon as ``size`` reaches the number of classes. Deterministic."""
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for s in sorted(samples, key=lambda s: s.id):
        by_class[s.label].append(s)
    chosen: list[Sample] = []
    depth = 0
    while len(chosen) < size and any(len(v) > depth for v in by_class.values()):
        for label in sorted(by_class):
            if depth < len(by_class[label]) and len(chosen) < size:
                chosen.append(by_class[label][depth])
        depth += 1
    return chosen


def engine_key(onnx_sha256: str, trt_version: str, gpu: str, compute_capability: str, options: Options,
               input_shape: tuple[int, ...], calibration: str | None) -> str:
    """Everything that makes two engines differ; the cache file name carries its hash."""
    parts = {"onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu, "cc": compute_capability,
             "precision": options.precision, "batch": [1, options.batch_size, options.batch_size],
             "input": list(input_shape), "workspace_mib": options.workspace_mib,
             "calibration": calibration if options.precision == "int8" else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _require_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as e:
        raise UserError("runtime=trt needs TensorRT and a CUDA GPU: pip install 'evalkit[trt]' "
                        "(NVIDIA's tensorrt wheels; pycuda or cuda-python)") from e
    return tensorrt


class TrtRuntime(Runtime):
    def __init__(self, trt: Any, cuda: Cuda, engine: Any, options: Options, build: dict[str, Any]) -> None:
        self.trt, self.cuda, self.engine, self.options, self.build = trt, cuda, engine, options, build
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise UserError(f"the engine has inputs {inputs} and outputs {outputs}; evalkit feeds one image input")
        self.input, self.output = inputs[0], outputs[0]
        self.input_dtype = trt.nptype(engine.get_tensor_dtype(self.input))
        self.output_dtype = trt.nptype(engine.get_tensor_dtype(self.output))
        lo, _, hi = engine.get_tensor_profile_shape(self.input, 0)
        self.max_batch = hi[0]
        self.fixed_batch = hi[0] if lo[0] == hi[0] else None
        self.input_shape = tuple(engine.get_tensor_shape(self.input))[1:]
        out_shape = tuple(engine.get_tensor_shape(self.output))
        self.num_outputs = out_shape[-1] if len(out_shape) == 2 and out_shape[-1] > 0 else None
        self.metadata = build.get("metadata", {})
        self._buffers: dict[str, tuple[Any, int]] = {}

    def _buffer(self, name: str, nbytes: int) -> int:
        buf, size = self._buffers.get(name, (None, 0))
        if size < nbytes:
            if buf is not None:
                self.cuda.free(buf)
            buf = self.cuda.alloc(nbytes)
            self._buffers[name] = (buf, nbytes)
        return buf

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self.input_dtype)
        self.context.set_input_shape(self.input, x.shape)
        out_shape = tuple(self.context.get_tensor_shape(self.output))
        out = np.empty(out_shape, dtype=self.output_dtype)
        d_in, d_out = self._buffer(self.input, x.nbytes), self._buffer(self.output, out.nbytes)
        self.context.set_tensor_address(self.input, self.cuda.ptr(d_in))
        self.context.set_tensor_address(self.output, self.cuda.ptr(d_out))
        self.cuda.to_device(d_in, x)
        if not self.context.execute_async_v3(self.cuda.stream_handle()):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.cuda.to_host(out, d_out)
        self.cuda.synchronize()
        return out.astype(np.float32)

    def latency(self) -> dict[str, dict[str, float]]:
        """Per batch size: mean/p50/p99 ms and images/s over timed batches after a warm-up, synchronised."""
        found = {}
        for bs in (b for b in self.options.latency_batches if b <= self.max_batch):
            x = np.zeros((bs, *self.input_shape), np.float32)
            for _ in range(10):
                self.infer(x)
            times = []
            for _ in range(self.options.latency_iters):
                start = time.perf_counter()
                self.infer(x)
                times.append((time.perf_counter() - start) * 1000)
            found[f"bs{bs}"] = {"mean_ms": float(np.mean(times)), "p50_ms": float(np.percentile(times, 50)),
                                "p99_ms": float(np.percentile(times, 99)), "images_per_s": bs * 1000 / float(np.mean(times))}
        return found

    def info(self) -> dict[str, Any]:
        return {"tensorrt": self.trt.__version__, "cuda_backend": self.cuda.backend, **self.build,
                "latency": self.latency()}

    def close(self) -> None:
        for buf, _ in self._buffers.values():
            self.cuda.free(buf)
        self._buffers.clear()


def _calibrator(trt: Any, cuda: Cuda, prepared: PreparedSource, batch: int, shape: tuple, cache: Path) -> Any:
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds the recipe's arrays of the calibration subset (through the tensor cache); the
        calibration cache lives beside the engine."""

        def __init__(self) -> None:
            super().__init__()
            self.next = 0
            self.device = cuda.alloc(batch * int(np.prod(shape)) * 4)

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            total = len(prepared.samples)
            if self.next >= total:
                return None
            n = min(batch, total - self.next)
            x = np.zeros((batch, *shape), np.float32)
            x[:n] = prepared.batch(self.next, self.next + n)
            self.next += n
            cuda.to_device(self.device, x)
            cuda.synchronize()
            return [cuda.ptr(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def _build(trt: Any, logger: Any, onnx: Path, options: Options, shape: tuple, timing_cache: Path,
           calibrator: Any) -> bytes:
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, (1, *shape), (options.batch_size, *shape), (options.batch_size, *shape))
    config.add_optimization_profile(profile)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx} (see its log above)")
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def open(options: Options, context: Context) -> TrtRuntime:
    trt = _require_tensorrt()
    cuda = open_cuda()
    onnx = context.onnx_file()
    shape = context.recipe.output_shape
    gpu, cc = cuda.device()
    calib = calibration_subset(context.samples, options.calib_size) if options.precision == "int8" else []
    calib_id = (f"{samples_fingerprint(calib)}-{context.recipe.fingerprint}-bs{options.calib_batch}"
                if calib else None)
    key = engine_key(file_sha256(onnx), trt.__version__, gpu, cc, options, shape, calib_id)
    folder = context.cache_dir / "trt"
    folder.mkdir(parents=True, exist_ok=True)
    engine_path, sidecar = folder / f"{context.model.name.replace('/', '_')}-{key}.engine", folder / f"{key}.json"
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine, cache_hit = None, False
    if engine_path.is_file() and sidecar.is_file():
        recorded = json.loads(sidecar.read_text())
        data = engine_path.read_bytes()
        if recorded.get("engine_sha256") == hashlib.sha256(data).hexdigest():
            engine = runtime.deserialize_cuda_engine(data)
            cache_hit = engine is not None
        if not cache_hit:
            print(f"engine cache {engine_path.name} is stale or corrupt; rebuilding", file=sys.stderr)
    if engine is None:
        print(f"building a TensorRT {options.precision} engine for {onnx.name} on {gpu} (cached as {engine_path.name})",
              file=sys.stderr)
        if calib and len({s.label for s in calib}) < len({s.label for s in context.samples}):
            print(f"note: {len(calib)} calibration images cannot cover all classes", file=sys.stderr)
        prepared = context.prepared(calib) if calib else None
        calibrator = _calibrator(trt, cuda, prepared, options.calib_batch, shape, folder / f"{key}.calib") if calib else None
        started = time.perf_counter()
        try:
            data = _build(trt, logger, onnx, options, shape,
                          folder / f"timing-{gpu.replace(' ', '_')}-{trt.__version__}.cache", calibrator)
        finally:
            if prepared is not None:
                prepared.close()
        _write_atomic(engine_path, data)
        _write_atomic(sidecar, json.dumps({"engine_sha256": hashlib.sha256(data).hexdigest(), "onnx": str(onnx),
                                           "build_seconds": time.perf_counter() - started}).encode())
        engine = runtime.deserialize_cuda_engine(data)
    build = {"engine": str(engine_path), "engine_cache_hit": cache_hit, "gpu": gpu, "compute_capability": cc,
             "precision": options.precision, "batch_range": [1, options.batch_size],
             "calibration": {"images": len(calib), "classes": len({s.label for s in calib}), "batch": options.calib_batch,
                             "samples_fingerprint": samples_fingerprint(calib)} if calib else None}
    return TrtRuntime(trt, cuda, engine, options, build)
