"""ONNX Runtime: an InferenceSession on the CPU provider by default.

CUDA/TensorRT execution providers work by naming them in ``runtime.providers``
when the installed onnxruntime build has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.contract import Context, Runtime, file_sha256
from evalkit.errors import UserError, at_least


@dataclass
class Options:
    name: str = "ort"
    batch_size: int = 32
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    #: 0 lets onnxruntime choose (one per physical core)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    #: idle ORT threads spin-wait by default; off leaves the cores to the decode workers between batches
    allow_spinning: bool = False

    def __post_init__(self) -> None:
        for key, minimum in (("batch_size", 1), ("intra_op_threads", 0), ("inter_op_threads", 0)):
            at_least(f"runtime.{key}", getattr(self, key), minimum)


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


class OrtRuntime(Runtime):
    def __init__(self, session: Any, options: Options, path: str) -> None:
        self.session = session
        self.options = options
        self.path = path
        inputs, outputs = session.get_inputs(), session.get_outputs()
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
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input.name: batch.astype(self.input_dtype, copy=False)})[0]
        return out.astype(np.float32, copy=False)

    def info(self) -> dict[str, Any]:
        return {
            "onnxruntime": metadata.version("onnxruntime"),
            "providers": self.session.get_providers(),
            "model_file": self.path,
            "model_sha256": file_sha256(Path(self.path)),
        }


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
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
    try:
        session = ort.InferenceSession(path, so, providers=list(options.providers))
    except Exception as e:  # onnxruntime raises its own pybind types for unreadable models
        raise UserError(f"onnxruntime cannot load {path}: {e}") from e
    return OrtRuntime(session, options, path)
