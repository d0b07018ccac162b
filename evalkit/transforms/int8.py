"""int8: explicit QuantizeLinear/DequantizeLinear pairs, as TensorRT and ModelOpt place them.

Symmetric int8 weights per output channel and symmetric int8 activations (zero point 0: what TensorRT
requires), on the inputs of Conv, Gemm and MatMul only (a residual Add that shares a Conv's input sees the
same quantized tensor, as TensorRT fuses it): never on the model's output (Q/DQ there leaves
the logits ~60 distinct values and top-1 ties) and never on shape arithmetic (the tf_ models compute
their 'same' padding at run time). Bias stays float. Calibrated with ONNX Runtime's calibrators on the
context's samples, prepared by the run's own recipe, one batch per collection step
(``CalibStridedMinMax``): memory stays that of one batch for every method, where entropy and
percentile would otherwise hold every intermediate tensor of every batch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from evalkit.contract import Context, PrecisionOptions, PreparedSource, library_output
from evalkit.errors import UserError
from evalkit.transforms._onnx import onnx, split_exclude

TOOLS = ("onnxruntime", "onnx")
#: ``apply`` reads the calibration images from ``context.samples``
CALIBRATED = True
#: the ops whose inputs get Q/DQ (weights and activations)
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]


class _Batches:
    """ONNX Runtime's CalibrationDataReader over the prepared calibration images, one batch per range step."""

    def __init__(self, source: PreparedSource, input_name: str, batch_size: int) -> None:
        n = len(source.samples)
        self.source, self.input_name = source, input_name
        self.bounds = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
        self.todo: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.bounds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.todo = list(self.bounds[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        if not self.todo:
            return None
        return {self.input_name: self.source.batch(*self.todo.pop(0))}


def apply(options: PrecisionOptions, onnx_in: Path, onnx_out: Path, context: Context) -> None:
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise UserError("precision=int8 quantizes with ONNX Runtime's tools: pip install 'evalkit[ort]'") from e
    if not context.samples:
        raise UserError("precision=int8 needs calibration images: set precision.calibration.root=PATH")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.calibration.method]
    with tempfile.TemporaryDirectory(prefix="evalkit-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        with library_output("onnxruntime.quantization"):  # its notes (scales it raised, calibration steps): the log's
            quant_pre_process(str(onnx_in), str(pre), skip_symbolic_shape=True)
        names, ops = split_exclude(onnx().load(str(onnx_in), load_external_data=False), options.exclude)
        model = onnx().load(str(pre), load_external_data=False)
        quantized_ops = [op for op in QUANTIZED_OPS if op not in ops]
        with context.prepared(context.samples) as source, library_output("onnxruntime.quantization"):
            quantize_static(
                str(pre), str(onnx_out), _Batches(source, model.graph.input[0].name, options.calibration.batch_size),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                per_channel=True, calibrate_method=method, op_types_to_quantize=quantized_ops,
                nodes_to_exclude=names,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                               "OpTypesToExcludeOutputQuantization": quantized_ops, "CalibStridedMinMax": 1})

