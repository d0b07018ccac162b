"""Model transforms: one module per precision, registered under the ``evalkit.transforms`` entry points.

Each takes an ONNX file and writes a transformed one (``apply``); the core caches the result by content.
Each imports only ``evalkit.contract`` and ``evalkit.errors``.
"""
