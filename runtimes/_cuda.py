"""Device memory, copies and streams for the TensorRT runtime, through pycuda or cuda-python.

pycuda is what the vendor seeds use; cuda-python (``cuda.bindings.runtime``, 12.6.1 and later;
cuda-python 13 has no ``cuda.cudart``) installs from PyPI without the CUDA headers pycuda needs
to build. The runtime sees one small interface.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from evalkit.errors import UserError


class Cuda(Protocol):
    """One GPU, one stream: allocate, copy host<->device, synchronise, describe the device."""

    backend: str

    def alloc(self, nbytes: int) -> Any: ...
    def ptr(self, buffer: Any) -> int: ...
    def to_device(self, buffer: Any, host: np.ndarray) -> None: ...
    def to_host(self, host: np.ndarray, buffer: Any) -> None: ...
    def synchronize(self) -> None: ...
    def stream_handle(self) -> int: ...
    def free(self, buffer: Any) -> None: ...
    def device(self) -> tuple[str, str]:
        """(GPU name, compute capability 'major.minor')."""
        ...


class _PyCuda:
    backend = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as driver

        try:
            import pycuda.autoinit  # noqa: F401  (creates the context on device 0)
        except (driver.Error, RuntimeError) as e:  # no GPU or driver: cuInit or the context fails
            raise UserError(f"CUDA error: {e}; check the GPU and its driver") from e
        self.driver = driver
        self.stream = driver.Stream()

    def alloc(self, nbytes: int) -> Any:
        return self.driver.mem_alloc(nbytes)

    def ptr(self, buffer: Any) -> int:
        return int(buffer)

    def to_device(self, buffer: Any, host: np.ndarray) -> None:
        self.driver.memcpy_htod_async(buffer, np.ascontiguousarray(host), self.stream)

    def to_host(self, host: np.ndarray, buffer: Any) -> None:
        self.driver.memcpy_dtoh_async(host, buffer, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def stream_handle(self) -> int:
        return self.stream.handle

    def free(self, buffer: Any) -> None:
        buffer.free()

    def device(self) -> tuple[str, str]:
        dev = self.driver.Context.get_device()
        major, minor = dev.compute_capability()
        return dev.name(), f"{major}.{minor}"


class _CudaPython:
    backend = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:  # cuda-python before 12.6.1
            from cuda import cudart
        self.cudart = cudart
        self._check(cudart.cudaSetDevice(0))
        self.stream = self._check(cudart.cudaStreamCreate())
        self._pinned: list[np.ndarray] = []

    def _check(self, result: tuple) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.cudart.cudaError_t.cudaSuccess:
            text = self.cudart.cudaGetErrorString(err)[1]
            text = text.decode() if isinstance(text, bytes) else str(text)
            raise UserError(f"CUDA error {getattr(err, 'name', err)}: {text}; check the GPU and its driver")
        return rest[0] if len(rest) == 1 else rest

    def alloc(self, nbytes: int) -> Any:
        return self._check(self.cudart.cudaMalloc(nbytes))

    def ptr(self, buffer: Any) -> int:
        return int(buffer)

    def to_device(self, buffer: Any, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        self._pinned.append(host)  # keep the source alive until the stream is synchronised
        self._check(self.cudart.cudaMemcpyAsync(buffer, host.ctypes.data, host.nbytes,
                                                self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))

    def to_host(self, host: np.ndarray, buffer: Any) -> None:
        self._check(self.cudart.cudaMemcpyAsync(host.ctypes.data, buffer, host.nbytes,
                                                self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self.stream))
        self._pinned.clear()

    def stream_handle(self) -> int:
        return int(self.stream)

    def free(self, buffer: Any) -> None:
        self._check(self.cudart.cudaFree(buffer))

    def device(self) -> tuple[str, str]:
        props = self._check(self.cudart.cudaGetDeviceProperties(0))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00"), f"{props.major}.{props.minor}"


def open_cuda() -> Cuda:
    """pycuda when it imports, else cuda-python; a missing pair is one message naming the extra."""
    try:
        return _PyCuda()
    except ImportError:
        pass
    try:
        return _CudaPython()
    except ImportError as e:
        raise UserError("runtime=trt needs pycuda or cuda-python for GPU memory: pip install 'evalkit[trt]'") from e
