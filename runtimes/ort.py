"""ONNX Runtime: an InferenceSession on the CPU provider by default, or on one GPU through CUDA/TensorRT.

Throughput on CPU: ``runtime.sessions`` sessions run parts of each batch side by side, each on
``runtime.intra_op_threads`` threads, with spinning off (an idle thread that spins takes a core from
the decode workers). The default (``sessions=0``) is one single-threaded session per core, capped by
memory: every thread does useful work, where one session's many threads wait on each other.
Predictions equal one session's: each image's logits do not depend on the other images of its batch.

Precision: the context's ONNX is already in the requested precision. An int8 Q/DQ model runs
simulated by default (``session.disable_quant_qdq``: each Q/DQ pair rounds in fp32, which is what an
int8 accelerator computes); ``runtime.int8_kernels=true`` lets ONNX Runtime fuse them into its own int8
kernels, whose accuracy depends on the CPU (u8s8 saturation without VNNI). The CPU provider runs an
fp16 model as fp32 kernels with Casts around them; ``info()`` reports what really ran, read from the
optimized graph.

GPU: ``runtime.providers`` naming ``CUDAExecutionProvider`` or ``TensorrtExecutionProvider`` (onnxruntime-gpu;
``runtime=ort_cuda`` names CUDA) runs one session on GPU ``runtime.device_id`` with IO binding: each batch is copied
to the GPU once, into a buffer kept for its shape, and the logits, left on the GPU by the run, are copied back once
(``session.run`` would copy both ways inside every run). A GPU provider the build has but cannot start (CUDA, cuDNN
or TensorRT libraries missing) makes ONNX Runtime fall back to the CPU without an error; here it is one, naming the
library the loader could not find.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np

from evalkit.contract import NO_GPU, Context, Runtime, cpu_cores, cpu_isa, cuda_devices, file_sha256, missing_modules
from evalkit.errors import UserError, at_least, capped

#: bf16 is absent: the CPU provider has no bfloat16 Conv/Gemm kernels
PRECISIONS = ("fp32", "fp16", "int8")
#: ops that hold the convolutions and matrix products, float or integer
_COMPUTE = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
_INTEGER = {"QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat"}
_TYPES = {1: "fp32", 10: "fp16", 16: "bf16"}
#: the providers that run on a GPU: one session, IO binding on "cuda"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
#: GPU provider -> its library in onnxruntime's capi folder (loaded when a session asks for the provider)
_LIBRARIES = {"CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
              "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so"}
CONV_ALGO_SEARCH = ("HEURISTIC", "EXHAUSTIVE", "DEFAULT")


@dataclass
class Options:
    name: str = "ort"
    batch_size: int = 32
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    #: sessions that run parts of each batch side by side; 0 = one per core (capped by memory)
    sessions: int = 0
    #: threads per session; 0 = the cores divided among the sessions (one session: onnxruntime's default)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    #: idle ORT threads spin-wait by default; off leaves the cores to the decode workers between batches
    allow_spinning: bool = False
    #: int8 Q/DQ models: false simulates quantization in fp32 (what an accelerator computes); true fuses Q/DQ
    #: into ONNX Runtime's own int8 kernels (CPU-dependent accuracy)
    int8_kernels: bool = False
    #: the GPU the CUDA/TensorRT providers run on
    device_id: int = 0
    #: the CUDA provider's cuDNN convolution algorithm choice: HEURISTIC (default: see provider_options), EXHAUSTIVE
    #: (onnxruntime's default), DEFAULT
    cudnn_conv_algo_search: str = "HEURISTIC"
    #: the TensorRT provider's engine folder; null:
    #: <cache_dir>/ort-tensorrt/<model sha256[:16]>-ort<version>-b<batch_size>
    trt_engine_cache: Optional[str] = None

    def __post_init__(self) -> None:
        for key, minimum in (("batch_size", 1), ("sessions", 0), ("intra_op_threads", 0), ("inter_op_threads", 0),
                             ("device_id", 0)):
            at_least(f"runtime.{key}", getattr(self, key), minimum)
        if self.cudnn_conv_algo_search not in CONV_ALGO_SEARCH:
            raise UserError(f"runtime.cudnn_conv_algo_search={self.cudnn_conv_algo_search} is not one of "
                            f"{', '.join(CONV_ALGO_SEARCH)}")


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def plan(options: Options, model_bytes: int, fixed_batch: bool) -> tuple[int, int, str]:
    """(sessions, threads per session, why): what ``sessions``/``intra_op_threads`` ask, or chosen for this machine."""
    cores = cpu_cores()
    if fixed_batch:
        return 1, options.intra_op_threads, "one session: the model's batch size is fixed"
    if options.sessions:
        sessions = capped("runtime.sessions", options.sessions, cores)
        threads = options.intra_op_threads or (max(1, cores // sessions) if sessions > 1 else 0)
        return sessions, threads, "as configured"
    # weights, their optimized copy and the activation arena of a batch: a generous per-session estimate
    per_session = 3 * model_bytes + (256 << 20)
    fit = max(1, _available_memory() // 2 // per_session)
    sessions = min(cores, fit)
    why = f"one per core ({cores})" if sessions == cores else f"{sessions}: as many as half the free memory holds"
    return sessions, options.intra_op_threads or max(1, cores // sessions), why


def _available_memory() -> int:
    """Bytes the kernel says a new allocation can take (MemAvailable); unknown: plenty."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 40


def provider_options(options: Options, input_name: str, dims: list[int | None], qdq: bool, engine_cache: Path | None
                     ) -> list[tuple[str, dict[str, Any]]]:
    """``runtime.providers`` with evalkit's options for the GPU ones (``dims``: the model input's, None where dynamic).

    CUDA: ``cudnn_conv_algo_search=HEURISTIC`` by default. onnxruntime's EXHAUSTIVE times every cuDNN algorithm of
    every convolution on the first batch of each new shape (the short last batch again): seconds to minutes of
    start-up that an evaluation does not win back, and a choice by timing, so two runs may differ in the last bits of
    their logits. HEURISTIC takes cuDNN's choice without running anything, the same on every run. ``use_tf32`` off:
    fp32 means IEEE fp32 here, as on the torch runtime (TF32 rounds the convolution inputs to 10 mantissa bits).

    TensorRT: never ``trt_fp16_enable``: the precision comes from the model, which evalkit's precision transform
    already made fp16 or int8 Q/DQ. ``trt_int8_enable`` only for a Q/DQ model: TensorRT refuses explicit Q/DQ without
    its INT8 flag, and calibrates nothing then. Engines are cached in ``engine_cache``; an optimisation profile from
    batch 1 to ``runtime.batch_size`` keeps the short last batch from rebuilding the engine.
    """
    chosen: list[tuple[str, dict[str, Any]]] = []
    for name in options.providers:
        settings: dict[str, Any] = {}
        if name == "CUDAExecutionProvider":
            settings = {"device_id": options.device_id, "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
                        "use_tf32": False}
        elif name == "TensorrtExecutionProvider":
            settings = {"device_id": options.device_id, "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(engine_cache), **_trt_profile(input_name, dims, options.batch_size)}
            if qdq:
                settings["trt_int8_enable"] = True
        chosen.append((name, settings))
    return chosen


def _trt_profile(name: str, dims: list[int | None], batch_size: int) -> dict[str, str]:
    """Batch 1 to ``batch_size`` for a dynamic-batch input whose other dimensions are fixed; else none (TensorRT then
    builds for the shapes it meets). The option's format cannot carry a name with ':' or ','."""
    if len(dims) != 4 or dims[0] is not None or None in dims[1:] or any(c in name for c in ":,"):
        return {}
    rest = "x".join(str(d) for d in dims[1:])
    most = f"{name}:{batch_size}x{rest}"
    return {"trt_profile_min_shapes": f"{name}:1x{rest}", "trt_profile_opt_shapes": most,
            "trt_profile_max_shapes": most}


class DeviceBinding:
    """Runs a session with its input and output on ``device`` ("cuda"; "cpu" runs the same code where no GPU is).

    The batch is copied into a device buffer kept for its shape (a run has two: the batch size and the last batch),
    the output is left to the session's device allocator, and the logits come back in one copy.
    """

    def __init__(self, session: Any, input_name: str, output_name: str, device: str, device_id: int) -> None:
        import onnxruntime as ort

        self.ort, self.session, self.device, self.device_id = ort, session, device, device_id
        self.input_name, self.output_name = input_name, output_name
        self.inputs: dict[tuple[int, ...], Any] = {}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch)
        value = self.inputs.get(batch.shape)
        if value is None:
            value = self.inputs[batch.shape] = self.ort.OrtValue.ortvalue_from_shape_and_type(
                batch.shape, batch.dtype.type, self.device, self.device_id)
        value.update_inplace(batch)  # the one host -> device copy
        binding = self.session.io_binding()  # a fresh one: a rebound output of another shape would be reused
        binding.bind_ortvalue_input(self.input_name, value)
        binding.bind_output(self.output_name, self.device, self.device_id)
        binding.synchronize_inputs()  # run_with_iobinding does not wait for a copy on another stream itself
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding.copy_outputs_to_cpu()[0]  # the one device -> host copy


class OrtRuntime(Runtime):
    def __init__(self, sessions: list[Any], options: Options, path: str, executed: str, plan: tuple[int, int, str],
                 providers: list[tuple[str, dict[str, Any]]], device: str | None = None) -> None:
        """``device``: where IO binding puts the input and output ("cuda", or "cpu" to test it); None: ``session.run``
        on host arrays (the CPU provider reads them in place)."""
        self.sessions = sessions
        self.session = sessions[0]
        self.options = options
        self.path = path
        self.executed = executed
        self.plan = plan
        self.providers = providers
        self.device = device
        self.pool = ThreadPoolExecutor(len(sessions)) if len(sessions) > 1 else None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise UserError(f"{path} has {len(inputs)} inputs; evalkit feeds classifiers with one image input")
        self.input = inputs[0]
        if len(self.input.shape) != 4:
            raise UserError(f"{path}: input {self.input.name} has shape {self.input.shape}; expected [N, C, H, W]")
        self.input_dtype = np.float16 if self.input.type == "tensor(float16)" else np.float32
        self.fixed_batch = _dim(self.input.shape[0])
        self.input_shape = tuple(_dim(d) for d in self.input.shape[1:])
        out_shape = outputs[0].shape
        self.num_outputs = _dim(out_shape[-1]) if len(out_shape) == 2 else None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.binding = None if device is None else DeviceBinding(
            self.session, self.input.name, outputs[0].name, device, options.device_id)

    def _run(self, session: Any, part: np.ndarray) -> np.ndarray:
        return session.run(None, {self.input.name: part.astype(self.input_dtype, copy=False)})[0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.binding is not None:
            out = self.binding(batch.astype(self.input_dtype, copy=False))
        elif self.pool is None:
            out = self._run(self.session, batch)
        else:  # contiguous parts, one per session, put back in order
            parts = [p for p in np.array_split(batch, len(self.sessions)) if len(p)]
            out = np.concatenate(list(self.pool.map(self._run, self.sessions, parts)))
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        if self.binding is not None:
            self.binding.inputs.clear()  # the device buffers

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort  # its version: the distribution is onnxruntime or onnxruntime-gpu

        info = {
            "onnxruntime": ort.__version__,
            "providers": self.session.get_providers(),
            "provider_options": {name: settings for name, settings in self.providers if settings},
            "device": f"cuda:{self.options.device_id}" if self.device == "cuda" else "cpu",
            "io_binding": self.binding is not None,
            "model_file": self.path,
            "model_sha256": file_sha256(Path(self.path)),
            "executed_precision": self.executed,
            "sessions": len(self.sessions), "threads_per_session": self.plan[1], "chosen": self.plan[2],
            "int8_kernels": self.options.int8_kernels,
            "cpu_isa": cpu_isa(),
        }
        if "TensorrtExecutionProvider" in self.session.get_providers():
            info["precision_from"] = "the model file (evalkit's precision transform); trt_fp16_enable is never set"
        return info


def _compute_types(model: Any) -> set[str]:
    """The types the convolutions and matrix products run in: their weights' type as the kernels see it."""
    inits = {i.name: i.data_type for i in model.graph.initializer}
    made = {out: n for n in model.graph.node for out in n.output}
    found = set()
    for node in model.graph.node:
        if node.op_type in _INTEGER:
            found.add("int8")
        elif node.op_type in _COMPUTE and len(node.input) > 1:
            weight = node.input[1]
            producer = made.get(weight)
            if weight in inits:
                found.add(_TYPES.get(inits[weight], str(inits[weight])))
            elif producer is not None and producer.op_type == "Cast":
                to = next(a.i for a in producer.attribute if a.name == "to")
                found.add(_TYPES.get(to, str(to)))
            elif producer is not None and producer.op_type == "DequantizeLinear":
                found.add("int8 simulated")
    return found


def executed_precision(original: Any, optimized: Any, simulated: bool) -> str:
    """What ran, in words: ``fp16 weights; fp32 compute``, ``int8 Q/DQ simulated in fp32``, ``int8 kernels``."""
    ops = {n.op_type for n in original.graph.node}
    stored = {_TYPES.get(i.data_type) for i in original.graph.initializer} - {None}
    compute = _compute_types(optimized)
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops:
        if simulated:
            return "int8 Q/DQ simulated in fp32"
        return f"int8 kernels on {cpu_isa()}" if "int8" in compute else "int8 Q/DQ not fused: fp32 compute"
    if "fp16" in stored:
        if compute == {"fp16"}:
            return "fp16"
        return "fp16 weights; fp32 compute" if compute <= {"fp32"} else f"fp16 weights; {'/'.join(sorted(compute))} compute"
    return "/".join(sorted(compute)) or "fp32"


def gpu_precision(original: Any, provider: str) -> str:
    """What a GPU provider runs, in words, from the model: neither provider's kernels are read back as the CPU's are."""
    ops = {n.op_type for n in original.graph.node}
    stored = {_TYPES.get(i.data_type) for i in original.graph.initializer} - {None}
    tensorrt = provider == "TensorrtExecutionProvider"
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops:
        # the CUDA provider runs Q and DQ as their own kernels around fp32 ones; TensorRT fuses them into int8 kernels
        return "int8 kernels (TensorRT, explicit Q/DQ)" if tensorrt else "int8 Q/DQ simulated in fp32"
    if "fp16" in stored:
        return "fp16 weights; layer precision TensorRT's choice (no FP16 flag)" if tensorrt else "fp16"
    return "fp32 (TensorRT allows TF32)" if tensorrt else "fp32"


def load_error(capi: Path, provider: str, cuda: str) -> str:
    """Why onnxruntime could not start a GPU provider, in the dynamic loader's words (they name the missing library),
    and what to do; ``cuda``: the CUDA version the build names, if any."""
    library = capi / _LIBRARIES[provider]
    if not library.is_file():
        return f"{library.name} is not in {capi}: this onnxruntime is no GPU build (pip install onnxruntime-gpu)"
    try:  # the library it links against first, as onnxruntime loads them
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(library))
    except OSError as e:
        built = f" (built for CUDA {cuda})" if cuda else ""
        return (f"{e}. Install the CUDA, cuDNN (and for TensorRT, TensorRT) libraries this onnxruntime{built} needs "
                "and put their folders on LD_LIBRARY_PATH (pip's nvidia-* packages keep them in "
                "site-packages/nvidia/*/lib)")
    return f"{library.name} and its libraries load: check the GPU, its driver (nvidia-smi) and runtime.device_id"


NEEDS_ORT = "runtime=ort needs onnxruntime: pip install 'evalkit[ort]'"


def preflight(options: Options) -> list[str]:
    """onnxruntime, and a GPU where the providers name one."""
    missing = missing_modules({"onnxruntime": NEEDS_ORT})
    gpu = [p for p in options.providers if p in GPU_PROVIDERS]
    if gpu and not missing:  # only here is onnxruntime imported: what its build has is asked of it
        import onnxruntime as ort

        absent = [p for p in gpu if p not in ort.get_available_providers()]
        if absent:
            missing.append(f"runtime.providers: {absent} not in this onnxruntime build: install onnxruntime-gpu "
                           "(in place of onnxruntime) for CUDA/TensorRT")
    if gpu and not cuda_devices():
        missing.append(f"runtime.providers names {gpu[0]}, but {NO_GPU}: use runtime=ort (the CPU)")
    return missing


def open(options: Options, context: Context) -> OrtRuntime:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UserError(NEEDS_ORT) from e
    path = str(context.onnx_file())
    missing = [p for p in options.providers if p not in ort.get_available_providers()]
    if missing:
        raise UserError(
            f"runtime.providers: {missing} not in this onnxruntime build "
            f"(available: {ort.get_available_providers()}); install onnxruntime-gpu for CUDA/TensorRT"
        )
    gpu = [p for p in options.providers if p in GPU_PROVIDERS]
    if gpu and options.sessions > 1:  # refused, not lowered: the run would not be what the command says
        raise UserError(f"runtime.sessions={options.sessions} splits each batch among CPU sessions; {gpu[0]} runs "
                        "whole batches in one session on the GPU: leave runtime.sessions at 0 (or 1) and raise "
                        "runtime.batch_size for throughput")
    so = ort.SessionOptions()
    so.inter_op_num_threads = options.inter_op_threads
    so.log_severity_level = 3
    for pool in ("intra_op", "inter_op"):
        so.add_session_config_entry(f"session.{pool}.allow_spinning", "1" if options.allow_spinning else "0")
    simulated = not options.int8_kernels
    if simulated:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    try:
        original = _load_graph(path)
    except Exception as e:  # onnx raises DecodeError and others for unreadable files
        raise UserError(f"onnxruntime cannot load {path}: {e}") from e
    if not original.graph.input:  # protobuf reads any bytes that happen to parse (an empty file) as an empty model
        raise UserError(f"{path} is not an ONNX model (its graph has no input): export it again")
    qdq = any(n.op_type == "DequantizeLinear" for n in original.graph.node)
    reduced = qdq or any(i.data_type != 1 for i in original.graph.initializer if i.data_type in _TYPES)
    dims = [_dim(d.dim_value) for d in original.graph.input[0].type.tensor_type.shape.dim]
    fixed = bool(dims) and dims[0] is not None
    if gpu:
        chosen = (1, options.intra_op_threads, f"one session on the GPU ({gpu[0]})")
    else:
        chosen = plan(options, Path(path).stat().st_size, fixed)
    so.intra_op_num_threads = chosen[1]
    engines = None
    if "TensorrtExecutionProvider" in gpu:
        # by model, onnxruntime and the profile's largest batch: an engine built for a smaller one cannot run it
        engines = Path(options.trt_engine_cache or context.cache_dir / "ort-tensorrt" /
                       f"{file_sha256(Path(path))[:16]}-ort{ort.__version__}-b{options.batch_size}").expanduser()
        engines.mkdir(parents=True, exist_ok=True)
    providers = provider_options(options, original.graph.input[0].name, dims, qdq, engines)
    # what the CPU kernels run shows only in the optimized graph; a TensorRT one cannot be saved (compiled nodes)
    read_optimized = reduced and not gpu
    sessions = []
    with tempfile.TemporaryDirectory(prefix="evalkit-ort-") as tmp:
        if read_optimized:
            so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        for _ in range(chosen[0]):
            try:  # enable_fallback=0: a provider failing here (a TensorRT build) is an error, not a run on the next
                sessions.append(ort.InferenceSession(path, so, providers=providers, enable_fallback=0))
            except Exception as e:  # onnxruntime raises its own pybind types for unreadable models
                raise UserError(f"onnxruntime cannot load {path}: {e}") from e
            so.optimized_model_filepath = ""
        optimized = original
        if read_optimized:
            optimized = _load_graph(str(Path(tmp) / "optimized.onnx"))
    lost = [p for p in gpu if p not in sessions[0].get_providers()]
    if lost:  # the provider did not start: onnxruntime logged it and went on with the others
        why = load_error(Path(ort.__file__).parent / "capi", lost[0], getattr(ort, "cuda_version", ""))
        raise UserError(f"runtime.providers: onnxruntime could not start {lost[0]} and would silently run on "
                        f"{sessions[0].get_providers()}: {why}")
    executed = gpu_precision(original, gpu[0]) if gpu else executed_precision(original, optimized, simulated)
    return OrtRuntime(sessions, options, path, executed, chosen, providers, "cuda" if gpu else None)


def _load_graph(path: str) -> Any:
    """An ONNX file's ModelProto (external data not loaded), as ``onnx.load`` reads it, without importing onnx.

    Importing onnx imports ml_dtypes, whose numpy registrations hold the GIL for ~0.6 s (numpy 2.4) at the start of
    a run, before the sessions exist and while the decode pool's feeder thread waits. onnx's generated protobuf
    module is loaded on its own instead; where onnx is imported already, laid out otherwise, or the bytes do not
    parse (``onnx.load`` then says why, in its words), the ordinary ``onnx.load``.
    """
    proto = None if "onnx" in sys.modules else _model_proto()
    if proto is not None:
        model, data = proto(), Path(path).read_bytes()
        with contextlib.suppress(Exception):  # protobuf's DecodeError, or another type for a damaged file
            model.ParseFromString(data)
            return model
    return _onnx().load(path, load_external_data=False)


@lru_cache(maxsize=1)
def _model_proto() -> type | None:
    """``onnx.ModelProto`` from onnx's generated ``onnx_ml_pb2.py`` run without the package; None without it."""
    spec = importlib.util.find_spec("onnx")
    if spec is None or not spec.submodule_search_locations:
        return None
    location = Path(list(spec.submodule_search_locations)[0]) / "onnx_ml_pb2.py"
    if not location.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location("onnx.onnx_ml_pb2", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ModelProto


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise UserError("runtime=ort reads the model graph with onnx: pip install 'evalkit[ort]'") from e
    return onnx
