"""ONNX Runtime: an InferenceSession on the CPU provider by default.

CUDA/TensorRT execution providers work by naming them in ``runtime.providers``
when the installed onnxruntime build has them.

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
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.contract import Context, Runtime, cpu_cores, cpu_isa, file_sha256
from evalkit.errors import UserError, at_least

#: bf16 is absent: the CPU provider has no bfloat16 Conv/Gemm kernels
PRECISIONS = ("fp32", "fp16", "int8")
#: ops that hold the convolutions and matrix products, float or integer
_COMPUTE = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
_INTEGER = {"QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat"}
_TYPES = {1: "fp32", 10: "fp16", 16: "bf16"}


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

    def __post_init__(self) -> None:
        for key, minimum in (("batch_size", 1), ("sessions", 0), ("intra_op_threads", 0), ("inter_op_threads", 0)):
            at_least(f"runtime.{key}", getattr(self, key), minimum)


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def plan(options: Options, model_bytes: int, fixed_batch: bool) -> tuple[int, int, str]:
    """(sessions, threads per session, why): what ``sessions``/``intra_op_threads`` ask, or chosen for this machine."""
    cores = cpu_cores()
    if fixed_batch:
        return 1, options.intra_op_threads, "one session: the model's batch size is fixed"
    if options.sessions:
        threads = options.intra_op_threads or (max(1, cores // options.sessions) if options.sessions > 1 else 0)
        return options.sessions, threads, "as configured"
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


class OrtRuntime(Runtime):
    def __init__(self, sessions: list[Any], options: Options, path: str, executed: str, plan: tuple[int, int, str]
                 ) -> None:
        self.sessions = sessions
        self.session = sessions[0]
        self.options = options
        self.path = path
        self.executed = executed
        self.plan = plan
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

    def _run(self, session: Any, part: np.ndarray) -> np.ndarray:
        return session.run(None, {self.input.name: part.astype(self.input_dtype, copy=False)})[0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.pool is None:
            out = self._run(self.session, batch)
        else:  # contiguous parts, one per session, put back in order
            parts = [p for p in np.array_split(batch, len(self.sessions)) if len(p)]
            out = np.concatenate(list(self.pool.map(self._run, self.sessions, parts)))
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def info(self) -> dict[str, Any]:
        return {
            "onnxruntime": metadata.version("onnxruntime"),
            "providers": self.session.get_providers(),
            "model_file": self.path,
            "model_sha256": file_sha256(Path(self.path)),
            "executed_precision": self.executed,
            "sessions": len(self.sessions), "threads_per_session": self.plan[1], "chosen": self.plan[2],
            "int8_kernels": self.options.int8_kernels,
            "cpu_isa": cpu_isa(),
        }


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


def open(options: Options, context: Context) -> OrtRuntime:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UserError("runtime=ort needs onnxruntime: pip install 'evalkit[ort]'") from e
    path = str(context.onnx_file())
    missing = [p for p in options.providers if p not in ort.get_available_providers()]
    if missing:
        raise UserError(
            f"runtime.providers: {missing} not in this onnxruntime build "
            f"(available: {ort.get_available_providers()}); install onnxruntime-gpu for CUDA/TensorRT"
        )
    so = ort.SessionOptions()
    so.inter_op_num_threads = options.inter_op_threads
    so.log_severity_level = 3
    for pool in ("intra_op", "inter_op"):
        so.add_session_config_entry(f"session.{pool}.allow_spinning", "1" if options.allow_spinning else "0")
    simulated = not options.int8_kernels
    if simulated:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    try:
        original = _onnx().load(path, load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others for unreadable files
        raise UserError(f"onnxruntime cannot load {path}: {e}") from e
    reduced = any(i.data_type != 1 for i in original.graph.initializer if i.data_type in _TYPES) or any(
        n.op_type == "DequantizeLinear" for n in original.graph.node)
    fixed = any(_dim(d.dim_value) for d in original.graph.input[0].type.tensor_type.shape.dim[:1])
    chosen = plan(options, Path(path).stat().st_size, fixed)
    so.intra_op_num_threads = chosen[1]
    sessions = []
    with tempfile.TemporaryDirectory(prefix="evalkit-ort-") as tmp:
        if reduced:  # what the kernels run shows only in the optimized graph
            so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        for _ in range(chosen[0]):
            try:
                sessions.append(ort.InferenceSession(path, so, providers=list(options.providers)))
            except Exception as e:  # onnxruntime raises its own pybind types for unreadable models
                raise UserError(f"onnxruntime cannot load {path}: {e}") from e
            so.optimized_model_filepath = ""
        optimized = _onnx().load(str(Path(tmp) / "optimized.onnx"), load_external_data=False) if reduced else original
    return OrtRuntime(sessions, options, path, executed_precision(original, optimized, simulated), chosen)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise UserError("runtime=ort reads the model graph with onnx: pip install 'evalkit[ort]'") from e
    return onnx
