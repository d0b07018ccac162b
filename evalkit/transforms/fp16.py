"""fp16: float16 weights and compute, float32 inputs and outputs (``keep_io_types``).

Uses ONNX Runtime's converter (``onnxruntime.transformers.float16``), whose models ONNX Runtime and
TensorRT load; onnxconverter-common's writes models ONNX Runtime refuses (its issue #320). The
converter leaves the Casts it inserts out of graph order, so the graph is sorted again before saving.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.contract import Context, PrecisionOptions
from evalkit.errors import UserError
from evalkit.transforms._onnx import onnx, split_exclude

#: the distributions whose versions change the written model
TOOLS = ("onnxruntime", "onnx")


def apply(options: PrecisionOptions, onnx_in: Path, onnx_out: Path, context: Context) -> None:
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel
    except ImportError as e:
        raise UserError("precision=fp16 converts with ONNX Runtime's tools: pip install 'evalkit[ort]'") from e
    model = onnx().load(str(onnx_in))
    names, ops = split_exclude(model, options.exclude)
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=names or None,
                                    op_block_list=ops or None)
    graph = OnnxModel(half)
    graph.topological_sort()
    onnx().save(graph.model, str(onnx_out))
