"""OpenVINO: the context's ONNX (or an OpenVINO IR ``.xml`` given as ``model.onnx``) compiled for ``runtime.device``.

Throughput: ``runtime.performance_hint=THROUGHPUT`` (default) lets OpenVINO choose its streams; each batch is
split across the compiled model's optimal number of infer requests (an ``AsyncInferQueue``) and put back in
order. A model with a fixed batch runs whole batches on one request (the core pads a short last batch).

Precision is always explicit: ``INFERENCE_PRECISION_HINT`` is set from ``precision=`` (fp32 -> f32, fp16 -> f16,
bf16 -> bf16, int8 -> f32 around the Q/DQ model's int8 kernels), because the CPU plugin otherwise picks bf16 on
CPUs with AMX or AVX-512 BF16 and an "fp32" run would silently be a bf16 one. ``info()`` reports what the
compiled model really uses and how many convolution/matmul layers ran in int8, read from the runtime model;
a difference from what was asked is printed as a warning.

precision=bf16 has no ONNX transform: OpenVINO converts the fp32 model itself, so it needs ``model.onnx``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.contract import Context, Runtime, cpu_isa, file_sha256, missing_modules
from evalkit.errors import UserError, at_least

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: evalkit precision -> OpenVINO INFERENCE_PRECISION_HINT (an int8 Q/DQ model keeps f32 between its int8 kernels)
HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}
#: OpenVINO element type -> evalkit's precision name
_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}
#: runtime-model layer types that hold the convolutions and matrix products
_COMPUTE = {"Convolution", "Deconvolution", "FullyConnected", "MatMul"}
_INT8 = ("i8", "u8")
#: compiled-model properties worth recording, where the device has them (AUTO has no precision hint of its own)
_RECORDED = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
             "EXECUTION_DEVICES")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")


@dataclass
class Options:
    name: str = "openvino"
    batch_size: int = 32
    #: CPU, GPU, NPU, AUTO (or AUTO:GPU,CPU): an OpenVINO device that core.available_devices has
    device: str = "CPU"
    #: 0 = the device's choice for the performance hint
    num_streams: int = 0
    #: 0 = the device's default
    inference_num_threads: int = 0
    performance_hint: str = "THROUGHPUT"

    def __post_init__(self) -> None:
        for key, minimum in (("batch_size", 1), ("num_streams", 0), ("inference_num_threads", 0)):
            at_least(f"runtime.{key}", getattr(self, key), minimum)
        if self.performance_hint not in PERFORMANCE_HINTS:
            raise UserError(f"runtime.performance_hint={self.performance_hint} is not one of "
                            f"{', '.join(PERFORMANCE_HINTS)}")


class OpenVinoRuntime(Runtime):
    def __init__(self, ov: Any, compiled: Any, options: Options, path: Path, metadata: dict[str, str]) -> None:
        self.compiled = compiled
        self.options = options
        self.path = path
        self.metadata = metadata
        self.version = ov.get_version()
        if len(compiled.inputs) != 1:
            raise UserError(f"{path} has {len(compiled.inputs)} inputs; evalkit feeds classifiers with one image input")
        shape = compiled.inputs[0].get_partial_shape()
        if shape.rank.is_dynamic or len(shape) != 4:
            raise UserError(f"{path}: input has shape {shape}; expected [N, C, H, W]")
        self.input_dtype = compiled.inputs[0].get_element_type().to_dtype()
        self.fixed_batch = _dim(shape[0])
        self.input_shape = tuple(_dim(d) for d in list(shape)[1:])
        out = compiled.outputs[0].get_partial_shape()
        self.num_outputs = _dim(out[1]) if out.rank.is_static and len(out) == 2 else None
        # a fixed batch cannot be split: whole batches on one request
        self.jobs = 1 if self.fixed_batch else compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self.queue: Any = ov.AsyncInferQueue(compiled, self.jobs)
        self.queue.set_callback(self._done)
        self.results: list[np.ndarray | None] = []
        self.layers = layer_precisions(compiled.get_runtime_model())
        self.executed = executed_precision(self.layers)
        supported = compiled.get_property("SUPPORTED_PROPERTIES")
        self.properties = {key.lower(): _plain(compiled.get_property(key)) for key in _RECORDED if key in supported}

    def _done(self, request: Any, index: int) -> None:
        self.results[index] = request.get_output_tensor(0).data.copy()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        parts = [p for p in np.array_split(batch.astype(self.input_dtype, copy=False), self.jobs) if len(p)]
        self.results = [None] * len(parts)
        for index, part in enumerate(parts):
            self.queue.start_async({0: part}, index)
        self.queue.wait_all()
        return np.concatenate(self.results).astype(np.float32, copy=False)

    def close(self) -> None:
        self.queue = None
        self.compiled = None

    def info(self) -> dict[str, Any]:
        weights = self.path.with_suffix(".bin") if self.path.suffix == ".xml" else None
        return {
            "openvino": self.version,
            "device": self.options.device,
            **self.properties,
            "infer_requests": self.jobs,
            "model_file": str(self.path),
            "model_sha256": file_sha256(self.path),
            **({"weights_sha256": file_sha256(weights)} if weights is not None else {}),
            "executed_precision": self.executed,
            "int8_layers": sum(p in _INT8 for p in self.layers), "compute_layers": len(self.layers),
            "cpu_isa": cpu_isa(),
        }


def _dim(d: Any) -> int | None:
    return d.get_length() if d.is_static else None


def _plain(value: Any) -> Any:
    """A property as JSON: an element type by its name (``f32``), an enum by its name (AUTO's ``THROUGHPUT``)."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    return getattr(value, "name", value)


def layer_precisions(runtime_model: Any) -> list[str]:
    """The precision each convolution/matmul layer runs in (``f32``, ``bf16``, ``i8``...), as compiled for the device.

    Read from the runtime model, not the hint: that is what the kernels do, on every device (AUTO included).
    """
    infos = [op.get_rt_info() for op in runtime_model.get_ordered_ops()]
    return [i["runtimePrecision"].astype(str) for i in infos if i["layerType"].astype(str) in _COMPUTE]


def executed_precision(layers: list[str]) -> str:
    """What ran, in evalkit's names (``fp32``, ``bf16``, ``int8 kernels (49 of 50 conv/matmul layers; fp32 for the
    rest)``), so a run's precision label shows only a difference from what was asked."""
    floats = "/".join(sorted({_NAMES.get(p, p) for p in layers if p not in _INT8}))
    int8 = sum(p in _INT8 for p in layers)
    if not int8:
        return floats or "no convolution or matmul"
    rest = f"; {floats} for the rest" if floats else ""
    return f"int8 kernels ({int8} of {len(layers)} conv/matmul layers{rest})"


def _metadata(model: Any) -> dict[str, str]:
    """The model's ``evalkit.*`` metadata: an ONNX's metadata_props (OpenVINO keeps them in rt_info ``framework``,
    also in an IR converted from that ONNX), then an IR's own top-level rt_info keys."""
    found = {}
    if model.has_rt_info("framework"):
        found.update({key: value.astype(str) for key, value in model.get_rt_info("framework").astype(dict).items()
                      if key.startswith("evalkit.")})
    found.update({key: model.get_rt_info(key).astype(str) for key in model.get_rt_info().keys()
                  if key.startswith("evalkit.")})
    return found


def model_path(context: Context) -> Path:
    """The file OpenVINO reads: the context's ONNX in the requested precision, or ``model.onnx`` itself where no
    ONNX transform applies (an IR; bf16, which OpenVINO makes from the fp32 model)."""
    given, precision = context.model.onnx, context.precision.name
    if not (precision == "bf16" or (given or "").endswith(".xml")):
        return context.onnx_file()
    if precision not in ("fp32", "bf16"):
        raise UserError(f"precision={precision} is an ONNX transform; an OpenVINO IR runs in fp32 or bf16 only: "
                        "give the ONNX file as model.onnx")
    if not given:
        raise UserError("precision=bf16 on runtime=openvino converts the fp32 model in OpenVINO (there is no bf16 "
                        "ONNX transform): pass model.onnx=PATH (python -m evalkit.export writes one)")
    path = Path(given).expanduser()
    if not path.is_file():
        raise UserError(f"model.onnx={given}: no such file")
    return path


def _check_device(device: str, available: list[str]) -> None:
    """``CPU``, ``GPU`` (any ``GPU.N``), ``GPU.1``, ``AUTO`` or ``AUTO:GPU,CPU``: each named device must be present."""
    named = device.split(":", 1)[1].split(",") if device.startswith("AUTO:") else [] if device == "AUTO" else [device]
    present = set(available) | {d.split(".")[0] for d in available}
    missing = [d for d in named if d not in present]
    if missing:
        raise UserError(f"runtime.device={device}: {', '.join(missing)} not available to OpenVINO here "
                        f"(available: {', '.join(available) or 'none'})")


NEEDS_OPENVINO = "runtime=openvino needs OpenVINO: pip install 'evalkit[openvino]'"


def preflight(options: Options) -> list[str]:
    return missing_modules({"openvino": NEEDS_OPENVINO})


def open(options: Options, context: Context) -> OpenVinoRuntime:
    try:
        import openvino as ov
    except ImportError as e:
        raise UserError(NEEDS_OPENVINO) from e
    path = model_path(context)
    core = ov.Core()
    _check_device(options.device, core.available_devices)
    try:
        model = core.read_model(str(path))
    except RuntimeError as e:  # OpenVINO raises RuntimeError for unreadable or unsupported files
        raise UserError(f"openvino cannot read {path}: {str(e).strip().splitlines()[-1]}") from e
    asked = context.precision.name
    config: dict[str, Any] = {"PERFORMANCE_HINT": options.performance_hint, "INFERENCE_PRECISION_HINT": HINTS[asked]}
    if options.num_streams:
        config["NUM_STREAMS"] = options.num_streams
    if options.inference_num_threads:
        config["INFERENCE_NUM_THREADS"] = options.inference_num_threads
    try:
        compiled = core.compile_model(model, options.device, config)
    except RuntimeError as e:
        raise UserError(f"openvino cannot compile {path} for {options.device}: {str(e).strip()}") from e
    runtime = OpenVinoRuntime(ov, compiled, options, path, _metadata(model))
    if runtime.executed.split()[0] != asked:
        print(f"WARNING: runtime=openvino: precision={asked} asked (INFERENCE_PRECISION_HINT={HINTS[asked]}), "
              f"{options.device} runs {runtime.executed}", file=sys.stderr)
    return runtime
