"""TensorRT 10.12 and later (11 included): strongly typed engines built from the ONNX, cached, run on one GPU.

Precision is no TensorRT setting: the core hands over the ONNX already transformed to the run's
``precision`` (float16 weights and compute, or explicit QuantizeLinear/DequantizeLinear nodes), and a
strongly typed network runs exactly the ONNX's types (TensorRT 11 builds no other kind). Build: parse
the ONNX, an optimisation profile over the batch dimension, a workspace limit and a persistent timing
cache. The engine cache is keyed by the ONNX content, TensorRT version, GPU name and compute capability,
batch range, input shape and workspace; a hit skips the build, and an engine whose bytes do not match
its recorded hash is rebuilt, not trusted. Engines carry no user metadata, so the ONNX's metadata (the
export's recipe) is kept in the JSON sidecar beside the engine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.contract import NO_GPU, Context, Runtime, cuda_devices, file_sha256, missing_modules, safe_name
from evalkit.errors import UserError, at_least
from evalkit.runtimes._cuda import Cuda, open_cuda

#: the ``precision`` names this runtime can run (the ONNX arrives transformed to them)
PRECISIONS = ("fp32", "fp16", "int8")
#: strongly typed networks, without the weakly typed builder flags, need 10.12 (TensorRT 11 has only them)
SUPPORTED_TENSORRT = "tensorrt>=10.12,<12"
MIN_TENSORRT = (10, 12)


@dataclass
class Options:
    name: str = "trt"
    #: batch size of evaluation and of the profile's opt and max shape
    batch_size: int = 32
    #: builder workspace limit, MiB
    workspace_mib: int = 4096
    #: batch sizes whose latency is measured after the run (warm-up, then timed batches with sync)
    latency_batches: list[int] = field(default_factory=lambda: [1, 4, 8])
    latency_iters: int = 50

    def __post_init__(self) -> None:
        for key in ("batch_size", "workspace_mib", "latency_iters"):
            at_least(f"runtime.{key}", getattr(self, key), 1)
        if any(b < 1 for b in self.latency_batches):
            raise UserError(f"runtime.latency_batches={self.latency_batches} is out of range: each must be >= 1")


def engine_key(onnx_sha256: str, trt_version: str, gpu: str, compute_capability: str, options: Options,
               input_shape: tuple[int, ...], precision: str) -> str:
    """Everything that makes two engines differ; the cache file name carries its hash.

    The ONNX hash already separates precisions (each is its own transformed file); the name is there for
    whoever reads a sidecar.
    """
    parts = {"onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu, "cc": compute_capability,
             "precision": precision, "batch": [1, options.batch_size, options.batch_size],
             "input": list(input_shape), "workspace_mib": options.workspace_mib}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def check_version(version: str) -> None:
    """An older TensorRT than the strongly typed path needs is one message naming the supported range."""
    try:
        found = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        raise UserError(f"cannot read the TensorRT version {version!r}; "
                        f"runtime=trt supports {SUPPORTED_TENSORRT}") from None
    if found < MIN_TENSORRT:
        raise UserError(f"runtime=trt supports {SUPPORTED_TENSORRT}, found tensorrt {version}: "
                        "pip install -U 'evalkit[trt]'")


def onnx_facts(path: Path) -> tuple[dict[str, str], str | None]:
    """(metadata_props, the precision its types make a strongly typed network run: fp32, fp16 or int8).

    QuantizeLinear nodes mean int8; float16 initializers or casts to float16 mean fp16. Without the
    ``onnx`` package (in evalkit[trt]) neither is known: ``({}, None)``.
    """
    try:
        import onnx
    except ImportError:
        return {}, None
    model = onnx.load(str(path), load_external_data=False)
    metadata = {p.key: p.value for p in model.metadata_props}
    half = onnx.TensorProto.FLOAT16
    nodes = model.graph.node
    if any(n.op_type == "QuantizeLinear" for n in nodes):
        return metadata, "int8"
    if (any(t.data_type == half for t in model.graph.initializer)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute) for n in nodes)):
        return metadata, "fp16"
    return metadata, "fp32"


NEEDS_TRT = ("runtime=trt needs TensorRT and a CUDA GPU: pip install 'evalkit[trt]' "
             "(NVIDIA's tensorrt wheels; pycuda or cuda-python)")


def preflight(options: Options) -> list[str]:
    """TensorRT, a CUDA binding for its buffers, and a GPU."""
    missing = missing_modules({"tensorrt": NEEDS_TRT})
    if not missing and not any(importlib.util.find_spec(binding) for binding in ("pycuda", "cuda")):
        missing.append("runtime=trt needs pycuda or cuda-python for GPU memory: pip install 'evalkit[trt]'")
    if not cuda_devices():
        missing.append(f"runtime=trt runs on a GPU, but {NO_GPU}: run it on a GPU machine, or use runtime=ort "
                       "or runtime=openvino here")
    return missing


def _require_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as e:
        raise UserError(NEEDS_TRT) from e
    check_version(tensorrt.__version__)
    return tensorrt


class TrtRuntime(Runtime):
    def __init__(self, trt: Any, cuda: Cuda, engine: Any, options: Options, build: dict[str, Any],
                 metadata: dict[str, str]) -> None:
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
        self.metadata = metadata
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


def _build(trt: Any, logger: Any, onnx: Path, options: Options, shape: tuple, timing_cache: Path) -> bytes:
    """A strongly typed engine: the ONNX's own types decide every layer's precision."""
    builder = trt.Builder(logger)
    # the flag's enum value differs between TensorRT 10 and 11, so the bit is computed, never written
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
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


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar's record; an unreadable one is no record (the engine is then rebuilt)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def open(options: Options, context: Context) -> TrtRuntime:
    trt = _require_tensorrt()
    cuda = open_cuda()
    onnx = context.onnx_file()
    shape = context.recipe.output_shape
    gpu, cc = cuda.device()
    precision = context.precision.name
    key = engine_key(file_sha256(onnx), trt.__version__, gpu, cc, options, shape, precision)
    folder = context.cache_dir / "trt"
    folder.mkdir(parents=True, exist_ok=True)
    engine_path = folder / f"{safe_name(context.model.name)}-{precision}-{key}.engine"
    sidecar = folder / f"{key}.json"
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine, recorded = None, {}
    if engine_path.is_file() and sidecar.is_file():
        recorded = _read_sidecar(sidecar)
        data = engine_path.read_bytes()
        if recorded.get("engine_sha256") == hashlib.sha256(data).hexdigest():
            engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            print(f"engine cache {engine_path.name} is stale or corrupt; rebuilding", file=sys.stderr)
    cache_hit = engine is not None
    if engine is None:
        print(f"building a TensorRT engine for {onnx.name} ({precision}) on {gpu} (cached as {engine_path.name})",
              file=sys.stderr)
        metadata, executed = onnx_facts(onnx)
        started = time.perf_counter()
        timing_cache = folder / f"timing-{gpu.replace(' ', '_')}-{trt.__version__}.cache"
        data = _build(trt, logger, onnx, options, shape, timing_cache)
        recorded = {"engine_sha256": hashlib.sha256(data).hexdigest(), "onnx": str(onnx),
                    "build_seconds": time.perf_counter() - started, "executed_precision": executed,
                    "metadata": metadata}
        _write_atomic(engine_path, data)
        _write_atomic(sidecar, json.dumps(recorded, indent=1).encode())
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise RuntimeError(f"TensorRT cannot load the engine it just built from {onnx} (see its log above)")
    build = {"engine": str(engine_path), "engine_cache_hit": cache_hit, "gpu": gpu, "compute_capability": cc,
             "precision": precision, "executed_precision": recorded.get("executed_precision"),
             "batch_range": [1, options.batch_size], "build_seconds": recorded.get("build_seconds")}
    return TrtRuntime(trt, cuda, engine, options, build, recorded.get("metadata", {}))
