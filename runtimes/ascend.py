"""Huawei Ascend: outputs dumped by the ``benchmark`` tool, ``ais_bench``, ``msame`` or MindSpore's 310 app.

Outputs are matched to images by file stem (``<stem>_1.txt``, ``<stem>_0.bin``,
``<stem>_output_0.txt``; for batched ais_bench runs through its ``*_summary.json``),
never by position. ``write_inputs`` makes the ``.bin`` inputs and the ``.info`` list of the
original flow from evalkit's own recipe, so the loop closes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from evalkit.contract import BadOutput, Context, OfflineRuntime, Sample, parse_json, read_text, read_npy
from evalkit.errors import UserError

#: file name patterns, most specific first: (format, regex)
PATTERNS = [
    ("msame", re.compile(r"^(?P<stem>.+)_output_0\.(?P<ext>txt|bin)$")),
    ("benchmark", re.compile(r"^(?P<stem>.+)_1\.(?P<ext>txt|bin)$")),
    ("ais_bench", re.compile(r"^(?P<stem>.+)_0\.(?P<ext>txt|bin|npy)$")),
    ("mindspore310", re.compile(r"^(?P<stem>.+)_0\.(?P<ext>bin)$")),
]
FORMATS = [name for name, _ in PATTERNS]
#: a .txt output's bound: more bytes than this per value is no output (checked before the file is read)
TXT_BYTES_PER_VALUE = 64


#: scores the logits a device wrote: no model file is read
MODEL_FROM = None


@dataclass
class Options:
    name: str = "ascend"
    #: the folder of output files (benchmark: result/dumpOutput_device0; MindSpore: result_Files)
    dump_dir: Optional[str] = None
    #: auto | benchmark | ais_bench | msame | mindspore310
    format: str = "auto"
    #: element type of .bin outputs: auto (from the file size) | float32 | float16
    dtype: str = "auto"
    #: ais_bench summary json; default <dump_dir>_summary.json when it exists
    summary: Optional[str] = None
    #: images without a usable output count as wrong instead of failing the run
    allow_missing: bool = False


@dataclass(frozen=True)
class Entry:
    path: Path
    #: row of a batched output file and the number of rows in it (ais_bench with batchsize > 1)
    row: int = 0
    rows: int = 1

    def __str__(self) -> str:
        return self.path.name if self.rows == 1 else f"{self.path.name}[{self.row}]"


class AscendDump(OfflineRuntime):
    def __init__(self, options: Options, folder: Path, num_outputs: int) -> None:
        self.options = options
        self.folder = folder
        self.allow_missing = options.allow_missing
        self.num_outputs = num_outputs
        self.summary = self._summary_path()
        # read before any scoring: a perf file that cannot be used stops the run now, not after it has scored
        self.perf = perf(folder, self.summary)
        self.format = self._detect() if options.format == "auto" else options.format
        if self.format not in FORMATS:
            raise UserError(f"runtime.format={self.format!r} is not one of auto, {', '.join(FORMATS)}")

    def _summary_path(self) -> Path | None:
        if self.options.summary:
            path = Path(self.options.summary).expanduser()
            if not path.is_file():
                raise UserError(f"runtime.summary={self.options.summary}: no such file")
            return path
        path = self.folder.parent / f"{self.folder.name}_summary.json"
        return path if path.is_file() else None

    def _detect(self) -> str:
        names = [p.name for p in self.folder.iterdir() if p.is_file()]
        for fmt, pattern in PATTERNS:
            if any(pattern.match(n) for n in names):
                return fmt
        raise UserError(f"runtime.dump_dir={self.folder}: no output files named <image>_1.txt|bin (benchmark), "
                        "<image>_0.txt|bin|npy (ais_bench, MindSpore 310) or <image>_output_0.txt|bin (msame)")

    def entries(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        if self.summary is not None and self.format == "ais_bench":
            for info in _load_json(self.summary).get("filesinfo", {}).values():
                outfiles = [self.folder / Path(p).name for p in info.get("outfiles", [])]
                infiles = info.get("infiles", [])
                if outfiles and outfiles[0].is_file():
                    for row, infile in enumerate(infiles):
                        found.setdefault(Path(infile).stem, []).append(Entry(outfiles[0], row, len(infiles)))
            return found
        pattern = dict(PATTERNS)[self.format]
        for path in sorted(self.folder.iterdir()):
            m = pattern.match(path.name)
            if m and path.is_file():
                found.setdefault(m["stem"], []).append(Entry(path))
        return found

    def read(self, entry: Entry) -> np.ndarray:
        values = self._values(entry.path, entry.rows * self.num_outputs)
        if entry.rows > 1:
            if values.size != entry.rows * self.num_outputs:
                raise BadOutput(f"{entry.path.name}: {values.size} values are not {entry.rows} images of "
                                f"{self.num_outputs}")
            values = values.reshape(entry.rows, -1)[entry.row]
        return values

    def _values(self, path: Path, count: int) -> np.ndarray:
        """The file's values, its size checked against the ``count`` expected before it is read."""
        size = path.stat().st_size
        if path.suffix == ".txt":
            if size > count * TXT_BYTES_PER_VALUE:
                raise BadOutput(f"{path.name}: {size} bytes of text, more than {count} values take")
            try:
                return np.array(path.read_text().split(), dtype=np.float64).astype(np.float32)
            except ValueError as e:
                raise BadOutput(f"{path.name}: not a list of numbers ({e})") from e
        if path.suffix == ".npy":
            with path.open("rb") as f:
                return read_npy(f, count, path.name)
        dtype = self._bin_dtype(size, count, path)
        return np.fromfile(path, dtype=dtype).astype(np.float32)

    def _bin_dtype(self, size: int, count: int, path: Path) -> str:
        """float16 for MindSpore 310, else as configured, else the type ``count`` values fill ``size`` bytes with."""
        dtypes = (["float16"] if self.format == "mindspore310" else
                  ["float32", "float16"] if self.options.dtype == "auto" else [self.options.dtype])
        for dtype in dtypes:
            if size == count * np.dtype(dtype).itemsize:
                return dtype
        raise BadOutput(f"{path.name}: {size} bytes are not {count} {' or '.join(dtypes)} values "
                        f"(model.num_classes={self.num_outputs}; truncated, or more than an output?)")

    def info(self) -> dict[str, Any]:
        return {"format": self.format, "dump_dir": str(self.folder), "perf": self.perf}


def _load_json(path: Path) -> dict:
    what = f"{path}: the ais_bench summary"
    try:
        data = parse_json(read_text(path, what), what)
    except OSError as e:
        raise UserError(f"{what} cannot be read ({e.strerror})") from e
    if not isinstance(data, dict):
        raise UserError(f"{what} is not a JSON object: is it an ais_bench --output summary?")
    return data


_PERF_LINE = re.compile(r"^\[(?P<stage>[^\]]+)\]\s*(?P<rest>.*)$")
_KEY_VALUE = re.compile(r"(?P<key>[A-Za-z_ ]+?):\s*(?P<value>[-+0-9.eE]+)")


def _figures(text: str, path: Path) -> dict[str, float]:
    """``key: number`` pairs of a perf line; a number that does not parse names the file."""
    try:
        return {k["key"].strip(): float(k["value"]) for k in _KEY_VALUE.finditer(text)}
    except ValueError as e:
        raise UserError(f"{path}: not a benchmark perf file the tool wrote ({e}); move it out of "
                        f"{path.parent} or fix it") from e


def perf(folder: Path, summary: Path | None) -> dict[str, Any]:
    """The device's own throughput/latency: benchmark perf files, PureInfer lines, ais_bench summary."""
    found: dict[str, Any] = {}
    for path in sorted(folder.parent.glob("perf_vision_batchsize_*_device_*.txt")):
        stages = {}
        for line in read_text(path, "benchmark perf file").splitlines():
            m = _PERF_LINE.match(line.strip())
            if m:
                stages[m["stage"]] = _figures(m["rest"], path)
        batch = re.search(r"batchsize_(\d+)", path.name)
        found[f"benchmark_bs{batch[1]}"] = stages
    for path in sorted(folder.parent.glob("PureInfer_perf_of_*.txt")):
        found["pure_infer"] = _figures(read_text(path, "PureInfer perf file"), path)
    if summary is not None:
        data = _load_json(summary)
        found["ais_bench"] = {k: v for k, v in data.items() if k != "filesinfo"}
    return found


def open(options: Options, context: Context) -> AscendDump:
    if not options.dump_dir:
        raise UserError("runtime=ascend needs runtime.dump_dir=PATH: the folder of output files the device wrote")
    folder = Path(options.dump_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"runtime.dump_dir={options.dump_dir}: no such folder")
    return AscendDump(options, folder, context.model.num_classes)


def write_inputs(context: Context, output: Path, progress: bool = True) -> list[Path]:
    """``output/<stem>.bin`` (float32 CHW, no batch dimension) of the context's samples, and ``<output>.info``.

    The .info lines are ``<index> <bin path> <width> <height>`` (get_info.py), for the benchmark tool's
    ``-input_text_path``; ais_bench takes the folder itself (``--input=output``).
    """
    def save(folder: Path, sample: Sample, array: np.ndarray) -> Path:
        array.astype(np.float32, copy=False).tofile(folder / f"{sample.id}.bin")
        return Path(f"{sample.id}.bin")

    samples = context.samples
    with context.prepared(samples) as prepared:
        arrays = (array for batch in prepared.batches(64) for array in batch)
        written = context.write_each(samples, arrays, output, save, progress)
    _, height, width = context.recipe.output_shape
    info = output.parent / f"{output.name}.info"
    info.write_text("".join(f"{i} {p} {width} {height}\n" for i, p in enumerate(written)))
    return [output, info]
