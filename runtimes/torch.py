"""PyTorch eager: the timm model with the user's weights, the framework the weights came from, on the CPU or one GPU.

The reference point of a framework comparison: the same weights through ONNX Runtime, TensorRT or a device
should agree with it image by image.

Precision: ``precision=fp16|bf16`` is the AMP switch (issue 16's ``runtime.amp``; precision is its own config
group): the model runs under ``torch.autocast`` on the run's device (matmul/conv ops in that type, the rest in
fp32), as timm's ``--amp`` does. ``precision=fp32`` on a GPU is IEEE fp32: PyTorch runs fp32 convolutions in TF32
by default, so the runtime turns TF32 off for convolutions and matmuls while it computes.

On a GPU (``runtime.device=cuda``) batches arrive as the recipe's uint8 pixels (a quarter of float32's bytes),
staged through two pinned host buffers and copied on a copy stream, then normalised on the GPU by the recipe's
``normalize_torch`` (equal to its CPU normalisation bit for bit). ``stream`` works one batch ahead: batch k+1 is
staged and copied while batch k computes, and batch k's logits come back once k+1 is queued. A CUDA
out-of-memory error halves the batch and retries it (down to one image), as timm's validate ``--retry`` does;
later batches run in pieces of that size. The same images give the same logits, so the predictions do not
change; ``info()`` reports the retries. With ``dataset.decode=gpu`` the batches are decoded on the GPU
(``decode_device``) and arrive there.

``runtime.compile=true`` runs ``torch.compile`` (off by default: a slow first batch, and a recompile for the short
last batch); its compiled artifacts go to torch's own cache (TORCHINDUCTOR_CACHE_DIR), not evalkit's.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generator, Iterable, Iterator

import numpy as np

from evalkit.contract import NO_GPU, Context, Runtime, cuda_devices, missing_modules
from evalkit.errors import UserError, at_least

#: fp16 and bf16 by autocast; int8 needs a quantized graph (an ONNX runtime runs the int8 transform)
PRECISIONS = ("fp32", "fp16", "bf16")
DEVICE = re.compile(r"cpu|cuda(:\d+)?")


@dataclass
class Options:
    name: str = "torch"
    batch_size: int = 32
    #: intra-op threads; 0 keeps PyTorch's default
    threads: int = 0
    #: cpu, cuda (the current GPU) or cuda:N
    device: str = "cpu"
    #: NHWC weights and inputs (faster convolutions on tensor cores)
    channels_last: bool = False
    #: torch.compile the model; its compiled artifacts go to torch's own cache (TORCHINDUCTOR_CACHE_DIR)
    compile: bool = False

    def __post_init__(self) -> None:
        for key, minimum in (("batch_size", 1), ("threads", 0)):
            at_least(f"runtime.{key}", getattr(self, key), minimum)
        if not DEVICE.fullmatch(self.device):
            raise UserError(f"runtime.device={self.device} is not a device: use cpu, cuda or cuda:N (N: the GPU index)")


class TorchRuntime(Runtime):
    def __init__(self, net: Any, torch: Any, device: Any, options: Options, context: Context) -> None:
        self.net, self.torch, self.device, self.options = net, torch, device, options
        self.weights = context.model.weights
        self.input_shape = context.recipe.output_shape
        self.num_outputs = context.model.num_classes
        self.precision = context.precision.name
        self.autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        #: the pieces batches run in after a CUDA out-of-memory error (None: whole batches)
        self.limit: int | None = None
        self.oom_retries = 0
        if device.type == "cuda":
            self.takes_pixels = True
            self.decode_device = str(device)
            self.normalize = context.recipe.normalize_torch
            self.copy_stream = torch.cuda.Stream(device)
            #: two pinned host buffers: one is filled while the other's copy to the GPU may still be running
            self.pinned: list[Any] = [None, None]
            # blocking: waiting for one sleeps instead of spinning a core the decode workers need
            self.copied = [torch.cuda.Event(blocking=True), torch.cuda.Event(blocking=True)]

    def _upload(self, batch: Any, slot: int) -> Any:
        """The uint8 batch on the GPU: staged in pinned buffer ``slot``, copied on the copy stream, which the
        compute stream waits for (the host does not). A batch decoded on the GPU (``dataset.decode=gpu``) is there."""
        if isinstance(batch, self.torch.Tensor):  # decoded on its own stream (finished): used on this one now
            batch.record_stream(self.torch.cuda.current_stream(self.device))
            return batch
        if batch.dtype != np.uint8:
            raise AssertionError(f"a CUDA torch runtime takes the recipe's uint8 pixels, got {batch.dtype}")
        torch = self.torch
        self.copied[slot].synchronize()  # the copy that last read this buffer is done: it may be overwritten
        if self.pinned[slot] is None or self.pinned[slot].shape[0] < len(batch):
            self.pinned[slot] = torch.empty(batch.shape, dtype=torch.uint8, pin_memory=True)
        staged = self.pinned[slot][: len(batch)]
        staged.numpy()[...] = batch
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.copy_stream):
            x = staged.to(self.device, non_blocking=True)
            self.copied[slot].record(self.copy_stream)
        compute.wait_stream(self.copy_stream)
        x.record_stream(compute)  # allocated on the copy stream, used on the compute stream
        return x

    @contextmanager
    def _ieee_fp32(self) -> Iterator[None]:
        """fp32 convolutions and matmuls in IEEE fp32 on a GPU (PyTorch's default there is TF32), only while this
        runtime computes: a user's code that reads the legacy ``allow_tf32`` flags after the new API was set raises."""
        if self.device.type != "cuda":
            yield
            return
        backends = self.torch.backends
        saved = backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision
        backends.cudnn.conv.fp32_precision = backends.cuda.matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision = saved

    def forward(self, x: Any) -> Any:
        """float32 logits, on the run's device, of a batch already there (benchmarks time this alone).

        A CUDA out-of-memory error halves the pieces and retries, down to one image, which re-raises.
        """
        torch = self.torch
        x = x.contiguous(memory_format=self.memory_format)
        pieces, lo = [], 0
        with torch.inference_mode(), self._ieee_fp32(), torch.autocast(self.device.type, dtype=self.autocast,
                                                                       enabled=self.autocast is not None):
            while lo < len(x):
                n = min(self.limit or len(x), len(x) - lo)
                try:
                    pieces.append(self.net(x[lo:lo + n]).float())
                    lo += n
                    continue
                except torch.cuda.OutOfMemoryError:
                    if n == 1:
                        raise
                # outside the except block, so the failed forward's tensors are no longer referenced
                torch.cuda.empty_cache()
                self.oom_retries += 1
                self.limit = (n + 1) // 2
        return torch.cat(pieces)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.device.type == "cuda":
            [logits] = self.stream([batch])
            return logits
        return self.forward(self.torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    def stream(self, batches: Iterable[np.ndarray]) -> Generator[np.ndarray, None, None]:
        """On a GPU, one batch ahead: batch k's logits are fetched once batch k+1 is copied and queued."""
        if self.device.type != "cuda":
            yield from super().stream(batches)
            return
        torch = self.torch
        queued = None
        for k, batch in enumerate(batches):
            logits = self.forward(self.normalize(self._upload(batch, k % 2)))
            host = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(logits, non_blocking=True)
            done = torch.cuda.Event(blocking=True)
            done.record(torch.cuda.current_stream(self.device))  # the run's GPU's stream, not the current GPU's
            if queued is not None:
                yield self._fetched(*queued)
            queued = host, done
        if queued is not None:
            yield self._fetched(*queued)

    @staticmethod
    def _fetched(host: Any, done: Any) -> np.ndarray:
        done.synchronize()
        return host.numpy().copy()  # the pinned buffer goes back to torch's cache

    def info(self) -> dict[str, Any]:
        torch = self.torch
        executed = f"{self.precision} (autocast, {self.device.type})" if self.autocast is not None else "fp32"
        info = {"torch": metadata.version("torch"), "timm": metadata.version("timm"), "weights": self.weights,
                "device": str(self.device), "channels_last": self.options.channels_last,
                "compile": self.options.compile, "threads": torch.get_num_threads(), "executed_precision": executed,
                # halvings after CUDA out-of-memory errors, and the batch size they went down to (None: none)
                "oom_retries": self.oom_retries, "oom_smallest_batch": self.limit}
        if self.device.type == "cuda":
            info.update(gpu=torch.cuda.get_device_name(self.device), cuda=torch.version.cuda,
                        input="uint8 pixels, normalised on the GPU")
        return info



def _gpu(device: str) -> Any:
    """The torch.device of ``runtime.device=cuda[:N]``, or a UserError where that GPU is not there."""
    try:
        import torch
    except ImportError as e:
        raise UserError(f"runtime=torch needs PyTorch ({e.name} is missing): pip install 'evalkit[torch]'") from e
    if not torch.cuda.is_available():
        build = f"a CUDA {torch.version.cuda} build, no GPU visible" if torch.version.cuda else "a CPU build"
        raise UserError(f"runtime.device={device} needs a CUDA GPU and a CUDA build of torch; this machine has none "
                        f"(torch {torch.__version__}, {build}): use runtime.device=cpu")
    index, count = torch.device(device).index, torch.cuda.device_count()
    if index is not None and index >= count:
        raise UserError(f"runtime.device={device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", torch.cuda.current_device() if index is None else index)


#: runtime=torch runs the framework model, built from the weights (a file or a hub checkpoint), not an ONNX
MODEL_FROM = "weights"
NEEDS_TORCH = "runtime=torch needs PyTorch and timm: pip install 'evalkit[torch]'"


def preflight(options: Options) -> list[str]:
    """torch and timm, and a GPU for runtime.device=cuda."""
    missing = missing_modules({"torch": NEEDS_TORCH, "timm": NEEDS_TORCH})[:1]
    if options.device != "cpu" and not cuda_devices():
        missing.append(f"runtime.device={options.device} needs a CUDA GPU, but {NO_GPU}: use runtime.device=cpu")
    return missing


def open(options: Options, context: Context) -> TorchRuntime:
    if not (context.model.weights or context.model.hub_id):
        raise UserError(f"runtime=torch runs model {context.model.name} from its weights: pass model.weights=PATH")
    gpu = _gpu(options.device) if options.device != "cpu" else None  # before the weights load
    net = context.torch_model()  # says which extra to install when torch/timm are missing
    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    device = gpu or torch.device("cpu")
    net = net.to(device)
    if options.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return TorchRuntime(torch.compile(net) if options.compile else net, torch, device, options, context)
