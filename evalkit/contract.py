"""The plug-in contract: everything a runtime, recipe, reader, metric or model transform may use.

A plug-in imports only this module and ``evalkit.errors`` (plus private helpers of its own
package); the core hands it everything else through a ``Context`` as plain data or callables.
Plug-ins are found by entry points (``GROUPS``): a package that declares

    [project.entry-points."evalkit.runtimes"]
    myrt = "mypkg.rt"

is selectable as ``runtime=myrt`` with no change to evalkit. What a module of each kind defines:

- runtime (``evalkit.runtimes``): ``Options`` (a dataclass whose ``name`` defaults to the entry-point
  name; an online runtime's also has ``batch_size``, the evaluation batch),
  ``open(options, context) -> Runtime | OfflineRuntime`` and ``PRECISIONS``, the ``precision`` names it
  can run (without it: fp32 only); optionally ``write_inputs(context, output, progress) -> list[Path]``
  (an ``InputWriter``: the files a device tool reads); ``MODEL_FROM``, what it runs: ``"onnx"`` (the default:
  ``model.onnx`` or an ONNX evalkit exports from the weights), ``"weights"`` (the framework model) or ``None``
  (a device's dumps); ``preflight(options) -> list[str]``, what this machine lacks for it (a library, a GPU),
  each with its fix, checked before any work without importing anything heavy.
- recipe (``evalkit.recipes``): ``Params`` (``family`` = the entry-point name), ``pixels(data, params)``,
  ``normalize(pixels, params)``, ``output_shape(params)`` and ``LIBRARIES`` (see ``Recipe``).
- reader (``evalkit.readers``): ``Options`` (a ``DatasetOptions`` whose ``layout`` defaults to the
  entry-point name, plus the reader's own keys) and ``read(options, classes) -> list[Sample]`` (``Reader``);
  optionally ``label_space(options, classes) -> list[int]``: the classes the set covers, when it covers
  fewer than the model predicts (ImageNet-A/R: the logits are restricted to them before top-k). A reader
  warns with ``warnings.warn``; the run prints and records it. A file it leaves out goes to ``warn_skipped``.
- metric (``evalkit.metrics``): ``open(classes, dataset) -> Metric`` (``dataset``: the run's
  ``DatasetOptions``, e.g. for its ``real_labels``); the run's ``metrics`` list names them.
- transform (``evalkit.transforms``, named after the precision it makes): ``apply(options, onnx_in, onnx_out,
  context)`` (``Transform``: ONNX in, ONNX out; ``options`` is the run's ``PrecisionOptions``, the context's
  samples are the calibration images when its ``CALIBRATED`` is true) and ``TOOLS``, the distributions whose
  versions change the output. A library call that prints goes inside ``library_output``: the run's log keeps it.

Heavy dependencies (torch, tensorrt, onnxruntime, cv2) are imported inside ``open``/``apply``, never
at module level: loading a plug-in to read its ``Options`` must stay light. A missing dependency
raises ``UserError`` naming the extra to install.
"""

from __future__ import annotations

import abc
import codecs
import contextlib
import ctypes
import dataclasses
import enum
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import platform
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache, partial
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Callable, ContextManager, Generator, Iterable, Iterator, Optional, Protocol, Sequence

import numpy as np

from evalkit.errors import UserError, at_least

# ----------------------------------------------------------------------------------------------- registries

#: plug-in kind -> entry-point group
GROUPS = {
    "runtime": "evalkit.runtimes",
    "recipe": "evalkit.recipes",
    "reader": "evalkit.readers",
    "metric": "evalkit.metrics",
    "transform": "evalkit.transforms",
}


def plugins(group: str) -> dict[str, metadata.EntryPoint]:
    """The entry points of a group by name (the first distribution wins a duplicate name)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)
    return dict(sorted(found.items()))


@lru_cache(maxsize=None)
def load(group: str, name: str) -> ModuleType:
    """The plug-in module registered as ``name`` in ``group``; UserError listing the valid names."""
    eps = plugins(group)
    if name not in eps:
        kind = next((k for k, g in GROUPS.items() if g == group), group)
        valid = ", ".join(eps) or (f"none: no {group} entry points are registered (is evalkit installed? "
                                   "pip install -e . registers them)")
        raise UserError(f"unknown {kind} {name!r}; valid: {valid}")
    return eps[name].load()


# ----------------------------------------------------------------------------------------------- hashing

def read_text(path: Path, what: str) -> str:
    """A text file a user or a tool wrote: UTF-8 (a BOM is dropped) or UTF-16 with its BOM, as Windows tools
    write it; anything else is a UserError naming the file and the fix (never a character that does not show)."""
    data = Path(path).read_bytes()
    for bom, codec in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            break
    else:
        codec = "utf-8"
    try:
        return data.decode(codec)
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}): save it "
                        "as UTF-8") from None


def parse_json(text: str | bytes, where: str) -> Any:
    """JSON from a file evalkit did not write: malformed or absurdly nested JSON is a UserError naming it."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0]
        raise UserError(f"{where}: not valid JSON ({reason})") from None


def safe_name(name: str, limit: int = 80) -> str:
    """A name from a config or from data as one short file name that stays in its folder: ``mmcls/cspresnext50``
    -> ``mmcls_cspresnext50``, ``../../x`` -> ``x``; at most ``limit`` characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:limit] or "unnamed"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (cache keys of models, engines)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def library_output(logger: str) -> Iterator[None]:
    """What a library prints in the block becomes ``logger``'s INFO records, line by line: the run's log keeps it,
    the terminal does not show it. Both Python's ``sys.stdout``/``sys.stderr`` and the C level's file descriptors
    1 and 2 are captured, so wrap only the library's own calls in it, never evalkit's output."""
    sys.stdout.flush()
    sys.stderr.flush()
    python = io.StringIO()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as native:
        try:
            os.dup2(native.fileno(), 1)
            os.dup2(native.fileno(), 2)
            with contextlib.redirect_stdout(python), contextlib.redirect_stderr(python):
                yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            native.seek(0)
            said = python.getvalue() + native.read().decode(errors="replace")
            for line in said.splitlines():
                if line.strip():
                    logging.getLogger(logger).info(line)


@dataclass(frozen=True)
class Sample:
    """One image: the file at ``path``, or ``size`` bytes at ``offset`` inside the uncompressed archive at ``path``
    (a tar shard's member, read in place so the shards need no unpacking)."""

    id: str
    path: Path
    label: int
    offset: Optional[int] = None
    size: Optional[int] = None

    def read(self) -> bytes:
        """The image's encoded bytes; OSError when the file cannot be read or the archive ends inside the member."""
        if self.offset is None:
            return self.path.read_bytes()
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.path}: member {self.id} needs {self.size} bytes at byte {self.offset}, "
                          f"the archive has {len(data)}: it is truncated")
        return data


def samples_fingerprint(samples: Iterable[Sample]) -> str:
    """Hash of a sample list (ids and labels); the run also hashes the image bytes it reads."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.id}\t{s.label}\n".encode())
    return h.hexdigest()[:16]


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask; a container's CPU set), which the decode workers
    and a CPU runtime's threads share."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: what a GPU runtime's preflight says on a machine without one
NO_GPU = "this machine has no CUDA GPU (no NVIDIA driver sees one)"


def cuda_devices() -> int:
    """CUDA GPUs the driver sees (0 without a driver), asked of libcuda itself: no framework is imported, so a
    preflight can say "no GPU" in milliseconds."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def missing_modules(advice: dict[str, str]) -> list[str]:
    """``advice[module]`` for each module that is not installed (found without importing it): a runtime's
    ``preflight``."""
    return [said for module, said in advice.items() if not _installed(module)]


def _installed(module: str) -> bool:
    """Whether ``module`` can be found (an import hook that refuses it counts as not installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cpu_isa() -> str:
    """The CPU's best int8-relevant instruction set (amx, avx512_vnni, avx_vnni, avx512, avx2), from /proc/cpuinfo.

    CPU int8 kernels saturate differently with and without VNNI, so int8 results are recorded beside it.
    """
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    for isa, flag in (("amx", "amx_int8"), ("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni"),
                      ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return isa
    return platform.machine() or "unknown"


def opencv() -> ModuleType:
    """The cv2 module, imported on first use (a missing one names the extra to install)."""
    try:
        import cv2
    except ImportError as e:
        raise UserError("this recipe decodes with OpenCV: pip install 'evalkit[opencv]'") from e
    return cv2


def check_pixels(data: bytes) -> None:
    """Refuse an image whose header declares more pixels than PIL decodes (``2 * Image.MAX_IMAGE_PIXELS``), before
    any decoder allocates them: OpenCV has no such limit of its own below a gigapixel, so an 875 KB PNG became 6 GB.

    PIL reads only the header here. An image whose size PIL cannot read is refused too: no decoder may take it
    unbounded. The refusal is an undecodable image's ``UserError``, so ``dataset.bad_images=count_wrong`` counts it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # between 1x and 2x: PIL decodes those
            with Image.open(io.BytesIO(data)):
                pass  # Image.open checks the size against PIL's limit
    except UnidentifiedImageError as e:  # its message names a BytesIO address: not the same twice
        raise UserError("cannot decode image: not a format whose size PIL can read from its header") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot decode image: {e}") from e


def decode_bgr(data: bytes) -> np.ndarray:
    """``cv2.imdecode(buf, IMREAD_COLOR)``: BGR HWC uint8, EXIF orientation applied, greyscale to 3 channels.

    The decode of the vendor flows written with OpenCV (recipes and device input writers alike), bounded by
    ``check_pixels`` first.
    """
    check_pixels(data)
    cv2 = opencv()
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # an empty buffer is an assertion inside OpenCV
        raise UserError(f"cannot decode image: {str(e).strip().splitlines()[-1]}") from e
    if img is None:
        raise UserError("cannot decode image: OpenCV could not read it")
    return img


# ----------------------------------------------------------------------------------------------- recipes

#: ``dataclasses.field(default=..., metadata=OMIT_DEFAULT)``: a recipe parameter added after runs were recorded;
#: ``params_dict`` leaves it out while it has its default, so the fingerprints of the recipes that do not use it
#: (tensor caches, comparisons with old runs, the recipe stored in exported models) stay what they were
OMIT_DEFAULT = {"omit_default": True}


def _is_default(f: dataclasses.Field, value: Any) -> bool:
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    return value == default


def params_dict(params: Any) -> dict[str, Any]:
    """Plain JSON-able parameters (enums by name) for fingerprints, metadata and printing; an ``OMIT_DEFAULT``
    field at its default is left out."""
    def plain(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.name
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return {f.name: plain(getattr(params, f.name)) for f in dataclasses.fields(params)
            if not (f.metadata.get("omit_default") and _is_default(f, getattr(params, f.name)))}


def dist_versions(dists: Iterable[str]) -> dict[str, str]:
    """Installed versions of distributions ("not installed" where absent): what a recipe's pixels or a transform's
    output depend on, so they go into fingerprints and cache keys."""
    found = {}
    for dist in dists:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def recipe_module(family: str) -> ModuleType:
    """The recipe family's module, through the ``evalkit.recipes`` entry points."""
    return load(GROUPS["recipe"], family)


@dataclass(frozen=True)
class Recipe:
    """A family's transform bound to its parameters; picklable for worker processes.

    The family module defines ``Params`` (its ``family`` field names the family),
    ``pixels(data, params)``: encoded image bytes -> the resized, cropped uint8 HWC image (a pure
    function), ``normalize(pixels, params)``: that image -> the float32 CHW array the model takes,
    ``output_shape(params)``: the (C, H, W) that ``normalize`` returns, ``normalize_torch(pixels, params)``:
    ``normalize`` of a uint8 NHWC torch batch on its own device, bit for bit (a GPU runtime normalises
    there, so batches travel as uint8), and ``LIBRARIES``: the distributions whose versions can change
    the pixels. Optionally ``pixels_torch(data, params, device)``: a batch of encoded images decoded and
    prepared on a GPU (``dataset.decode=gpu``; close to ``pixels``, not equal).
    """

    params: Any

    @property
    def family(self) -> str:
        return self.params.family

    @property
    def module(self) -> ModuleType:
        return recipe_module(self.family)

    @property
    def pixels_fn(self) -> Callable[[bytes], np.ndarray]:
        """bytes -> uint8 HWC pixels, picklable."""
        return partial(self.module.pixels, params=self.params)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        return self.module.normalize(pixels, self.params)

    def pixels_torch(self, data: list[bytes], device: str) -> tuple[Any, dict[int, str]]:
        """``dataset.decode=gpu``: the images decoded and prepared on ``device``, as a uint8 NHWC torch tensor whose
        work is finished, and the images that could not be decoded (position -> reason; their rows are zeros)."""
        return self.module.pixels_torch(data, self.params, device)

    def normalize_torch(self, pixels: Any) -> Any:
        """float32 NCHW on the batch's device, equal to ``normalize`` of each image."""
        return self.module.normalize_torch(pixels, self.params)

    def __call__(self, data: bytes) -> np.ndarray:
        return transform(data, self.params)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return tuple(self.module.output_shape(self.params))

    @property
    def libraries(self) -> dict[str, str]:
        return dist_versions(self.module.LIBRARIES)

    @property
    def fingerprint(self) -> str:
        """Hash of family, parameters and pixel-changing library versions: keys caches, goes in every run."""
        blob = json.dumps({"params": params_dict(self.params), "libraries": self.libraries}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line per parameter, as timm prints its resolved data config."""
        lines = [f"  {k}: {v}" for k, v in params_dict(self.params).items()]
        lines.append("  libraries: " + ", ".join(f"{k} {v}" for k, v in self.libraries.items()))
        lines.append(f"  fingerprint: {self.fingerprint}")
        return "\n".join(lines)


def transform(data: bytes, params: Any) -> np.ndarray:
    """The whole recipe: pixels, then normalize."""
    module = recipe_module(params.family)
    return module.normalize(module.pixels(data, params), params)


# ----------------------------------------------------------------------------------------------- precision

#: the ``precision=`` choices: fp32 is the model as exported; the others are a transform of it (fp16, int8)
#: or a runtime's own mode (bf16: torch autocast)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass
class Calibration:
    """The images int8 scales are calibrated on, prepared by the run's own recipe."""

    #: the calibration images' folder; null: a class-balanced subset of the evaluated images (overlaps the
    #: evaluation: warned and recorded)
    root: Optional[str] = None
    #: how ``root`` is laid out: a reader (imagefolder, or labelfile with ``labels``)
    layout: str = "imagefolder"
    labels: Optional[str] = None
    #: images, taken class by class so every class of the set is represented
    size: int = 500
    #: activation ranges: minmax (default: measured best here, see the README), entropy, percentile
    method: str = "minmax"
    batch_size: int = 16


@dataclass
class PrecisionOptions:
    """``precision=NAME``: the numeric format the model is evaluated in."""

    name: str = "fp32"
    #: node names or op types kept in fp32
    exclude: list[str] = dataclasses.field(default_factory=list)
    calibration: Calibration = dataclasses.field(default_factory=Calibration)

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise UserError(f"precision={self.name} is not one of {', '.join(PRECISIONS)}")
        if self.calibration.method not in CALIBRATION_METHODS:
            raise UserError(f"precision.calibration.method={self.calibration.method} is not one of "
                            f"{', '.join(CALIBRATION_METHODS)}")
        at_least("precision.calibration.size", self.calibration.size, 1)
        at_least("precision.calibration.batch_size", self.calibration.batch_size, 1)


# ----------------------------------------------------------------------------------------------- context

class ModelSpec(Protocol):
    """The model fields a plug-in may read (the core passes its model config, which has these)."""

    name: str
    arch: str
    source: str
    onnx: Optional[str]
    weights: Optional[str]
    #: the Hugging Face hub checkpoint the weights come from when ``weights`` is null
    hub_id: Optional[str]
    num_classes: int


class Classes(Protocol):
    """The class list: ``wnids[label]``, ``names[label]``, ``len()``."""

    wnids: Sequence[str]
    names: Sequence[str]

    def __len__(self) -> int: ...


class PreparedSource(Protocol):
    """The recipe's arrays of a sample list, made by the core's workers through the tensor cache."""

    samples: list[Sample]

    def batch(self, lo: int, hi: int) -> np.ndarray: ...
    def batches(self, size: int) -> Iterator[np.ndarray]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "PreparedSource": ...
    def __exit__(self, *exc: object) -> None: ...


@dataclass
class Context:
    """What a plug-in may need besides its own options: data, and the core's services as callables.

    The core builds it (``evalkit.plugins.make_context``); a plug-in only reads it.
    """

    model: ModelSpec
    recipe: Recipe
    #: the requested precision; ``onnx_file()`` already returns the model transformed to it
    precision: PrecisionOptions
    cache_dir: Path
    #: the class list the labels index (ImageNet-1k)
    classes: Classes
    #: the run's samples (an int8 calibrator draws its subset from them; input writers write them)
    samples: list[Sample]
    #: the preprocessed-tensor cache folder (None: no cache)
    tensor_cache: Path | None
    #: () -> Path: ``model.onnx``, or an ONNX the core exported from ``model.weights`` and cached; in the
    #: requested precision (the core applies and caches the precision transform)
    onnx_file: Callable[[], Path]
    #: () -> the framework model (timm, eval mode) with ``model.weights`` loaded
    torch_model: Callable[[], Any]
    #: (samples) -> a PreparedSource of the recipe's arrays (a context manager; close it)
    prepared: Callable[[list[Sample]], ContextManager[PreparedSource]]
    #: (samples, fn: bytes -> array) -> (array, sha256 of the file) per sample, in order, in threads
    ordered: Callable[..., Iterator[tuple[np.ndarray, bytes]]]
    #: (samples, arrays, output, save(folder, sample, array) -> relative path, progress) -> final paths;
    #: writes under a temporary folder renamed to ``output`` at the end
    write_each: Callable[..., list[Path]]


# ----------------------------------------------------------------------------------------------- runtimes

class Runtime(abc.ABC):
    """An online runtime: float32 NCHW batches in, logits [N, C] out."""

    #: (C, H, W) the model takes; None where a dimension is not fixed in the model.
    input_shape: tuple[int | None, ...] | None = None
    #: output class count when the model declares it, else None (checked on the first batch).
    num_outputs: int | None = None
    #: the batch size the model is fixed to, or None for a dynamic batch.
    fixed_batch: int | None = None
    #: key/value metadata stored in the model file (the export writes the recipe there).
    metadata: dict[str, str] = {}
    #: True: batches come as the recipe's uint8 NHWC pixels, and the runtime normalises them on its device
    #: (``Context.recipe.normalize_torch``): a quarter of float32's bytes cross to a GPU.
    takes_pixels: bool = False
    #: the torch device a ``dataset.decode=gpu`` batch is decoded on, for a runtime that then takes the pixels as a
    #: torch tensor already there; None: host arrays only
    decode_device: Optional[str] = None

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a batch whose size the model accepts."""

    def info(self) -> dict[str, Any]:
        """Versions and settings worth recording in the run."""
        return {}

    def close(self) -> None:
        """Release sessions and device memory; calling it twice is harmless."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits for any batch up to the model's size: a short last batch is padded, then trimmed."""
        n = len(batch)
        if self.fixed_batch is not None and n != self.fixed_batch:
            if n > self.fixed_batch:
                raise AssertionError(f"batch of {n} for a model fixed to {self.fixed_batch}")
            pad = np.zeros((self.fixed_batch - n, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, pad])
        return np.asarray(self.infer(batch))[:n]

    def stream(self, batches: Iterable[np.ndarray]) -> Generator[np.ndarray, None, None]:
        """The logits of each batch, in order: how the core runs an evaluation.

        The core hands batches ahead through this generator, so a runtime that can start the next batch
        while this one computes (a GPU: the next copy overlapping this compute) overrides it.
        """
        for batch in batches:
            yield self(batch)


class BadOutput(Exception):
    """An output file that cannot be used (truncated, wrong element count, unparsable): names why."""


def read_npy(file: BinaryIO, count: int, name: str) -> np.ndarray:
    """The ``count`` numbers of an .npy stream (a file, or an npz's member), flat float32, the header checked
    before any data is read or allocated: a header declaring another count (a 1 MB npz can declare a terabyte), a
    dtype that is not numbers (structured, object) or a short file is ``BadOutput`` naming ``name``."""
    try:
        version = np.lib.format.read_magic(file)
        if version not in ((1, 0), (2, 0)):  # 3.0 only adds unicode field names: structured, refused anyway
            raise ValueError(f"format version {version[0]}.{version[1]}")
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = header(file)
    except (ValueError, EOFError, SyntaxError, OSError) as e:
        raise BadOutput(f"{name}: not a readable .npy ({e})") from e
    if dtype.kind not in "fiu":
        raise BadOutput(f"{name}: holds {dtype} values, not numbers")
    if math.prod(shape) != count:
        raise BadOutput(f"{name}: declares shape {shape}, {math.prod(shape)} values, where {count} are expected")
    data = file.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise BadOutput(f"{name}: {len(data)} bytes of data where its header declares {count * dtype.itemsize}")
    values = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")
    return values.astype(np.float32).ravel()


class OfflineRuntime(abc.ABC):
    """Outputs a device already wrote (vendor tools' dumps), matched to samples by file name.

    evalkit does the accounting (missing, extra, duplicate, unusable outputs) the same
    way for every vendor; an adapter only says which outputs exist and how to read one.
    """

    #: images without a usable output count as wrong instead of failing the run
    allow_missing: bool = False
    #: scores per image an output must hold: the model's class count (``context.model.num_classes``: 1000, or 1001
    #: with background at index 0), never guessed from the files; None: the class list's count
    num_outputs: Optional[int] = None

    @abc.abstractmethod
    def entries(self) -> dict[str, list[Any]]:
        """Sample id (image file stem) -> the outputs found for it (normally one)."""

    @abc.abstractmethod
    def read(self, entry: Any) -> np.ndarray:
        """One image's output: float scores over the classes, or integer class indices best first.

        Raises ``BadOutput`` for a file that cannot be used.
        """

    def info(self) -> dict[str, Any]:
        """Dump format, folder, and the device's own throughput/latency figures where it wrote them."""
        return {}

    def close(self) -> None:
        """Nothing to release by default."""


class InputWriter(Protocol):
    """A runtime module's ``write_inputs``: the files its device tool reads, from the context's samples
    and recipe; returns the paths written (folders, lists)."""

    def __call__(self, context: Context, output: Path, progress: bool = True) -> list[Path]: ...


# ----------------------------------------------------------------------------------------------- readers

#: the test set published ImageNet-1k accuracies are measured on
VAL_SET = "imagenet-val"


@dataclass
class DatasetOptions:
    """The ``dataset`` keys every reader has; a reader's ``Options`` subclasses it with its own keys."""

    #: the reader (entry-point name in ``evalkit.readers``); chosen by ``dataset=NAME``'s YAML
    layout: str = ""
    #: what the run records as the dataset's name (default: the layout)
    name: str = ""
    #: first N samples (sorted by id)
    limit: Optional[int] = None
    #: first N samples of each class (sorted by id)
    per_class: Optional[int] = None
    #: evaluate the shard-th of num_shards contiguous blocks of the (subset) sample list
    num_shards: int = 1
    shard: int = 0
    #: an image that cannot be decoded: "fail" the run (default) or "count_wrong" and list it in the run
    bad_images: str = "fail"
    #: ImageNet-ReaL's real.json (50,000 label lists, entry i for ILSVRC2012_val_{i+1:08d}): adds real_top1/5
    real_labels: Optional[str] = None
    #: which test set the images are (published numbers are compared only with runs on their own set)
    test_set: str = VAL_SET
    #: cpu: the recipe's own decode and resize (bit-exact, tensor cache); gpu: JPEG decode (nvJPEG) and resize on
    #: the runtime's GPU, for a runtime that takes pixels there: faster, not bit-exact, no tensor cache
    decode: str = "cpu"
    #: a file the reader skips (a dangling symlink, a tar member that pairs with nothing) is named in the run's
    #: warnings; true: it fails the run instead (exit 2), so n is exactly the files there
    strict: bool = False

    def __post_init__(self) -> None:
        self.name = self.name or self.layout
        if self.bad_images not in ("fail", "count_wrong"):
            raise UserError(f"dataset.bad_images={self.bad_images!r} is not 'fail' or 'count_wrong'")
        if self.decode not in ("cpu", "gpu"):
            raise UserError(f"dataset.decode={self.decode!r} is not 'cpu' or 'gpu'")
        for key in ("limit", "per_class", "num_shards"):
            at_least(f"dataset.{key}", getattr(self, key), 1)
        if not 0 <= self.shard < self.num_shards:
            raise UserError(f"dataset.shard={self.shard} is out of range: must be in 0..{self.num_shards - 1} "
                            f"(dataset.num_shards={self.num_shards})")


class SkippedFiles(UserWarning):
    """A reader's warning that it left files out of the samples (``dataset.strict=true`` refuses the run)."""


#: how many skipped files a warning names
NAMED = 20


def warn_skipped(skipped: dict[str, str]) -> None:
    """Warn that the files in ``skipped`` (path -> why) were left out: counted and named, so n never shrinks
    unseen (the run records a reader's warnings)."""
    if skipped:
        named = [f"{path} ({why})" for path, why in list(skipped.items())[:NAMED]]
        more = f" and {len(skipped) - NAMED} more" if len(skipped) > NAMED else ""
        warnings.warn(f"{len(skipped)} files skipped, not scored: {'; '.join(named)}{more}", SkippedFiles)


class Reader(Protocol):
    """A reader module's ``read``: the dataset's samples (any order; the core sorts, subsets and shards).

    Labels are 0-based indices into ``classes.wnids``; an unusable layout raises ``UserError``.
    """

    def __call__(self, options: Any, classes: Classes) -> list[Sample]: ...


# ----------------------------------------------------------------------------------------------- metrics

#: predictions kept per image (top-1 .. top-5)
K = 5


@dataclass(frozen=True)
class Scored:
    """One batch as the core scored it: what a metric is fed."""

    ids: Sequence[str]
    #: int64 [N], indices into the class list
    labels: np.ndarray
    #: int32 [N, K] class indices best first (stable: on tied logits the lower index first); -1 = no prediction
    top: np.ndarray
    #: float [N, C] over the class list, or None where the runtime gave class indices or the rows
    #: come back from a checkpoint or shards; rows whose ``top`` is -1 (unusable images) have no usable logits
    logits: Optional[np.ndarray] = None


class Metric(Protocol):
    """Fed batch by batch, like timm's RealLabelsImagenet; ``result`` gives named values for run.json."""

    def update(self, batch: Scored) -> None: ...
    def result(self) -> dict[str, Any]: ...


class Transform(Protocol):
    """A transform module's ``apply``: write a transformed copy of an ONNX model (e.g. fp16, int8).

    ``context.samples`` are the calibration images (``context.prepared`` gives their arrays).
    """

    def __call__(self, options: PrecisionOptions, onnx_in: Path, onnx_out: Path, context: Context) -> None: ...


__all__ = [
    "GROUPS", "VAL_SET", "plugins", "load", "file_sha256", "dist_versions", "Sample", "samples_fingerprint",
    "OMIT_DEFAULT", "params_dict", "recipe_module", "Recipe", "transform", "PRECISIONS", "CALIBRATION_METHODS",
    "Calibration", "PrecisionOptions", "ModelSpec", "Classes", "PreparedSource", "Context", "Runtime", "BadOutput", "read_npy",
    "OfflineRuntime", "InputWriter", "DatasetOptions", "SkippedFiles", "warn_skipped", "Reader", "K", "Scored",
    "Metric", "Transform", "cpu_cores", "cpu_isa", "opencv", "check_pixels", "decode_bgr",
]
