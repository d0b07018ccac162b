"""evalkit: ImageNet accuracy evaluation harness with pluggable runtimes.

Importing evalkit stays light: runtimes and recipes import their heavy
dependencies (onnxruntime, tensorrt, torch, cv2) only when they are used.
"""

__version__ = "0.1.0"
