"""VastAI: ``vamp`` npz outputs with the datalist that produced them, or a vsx/vamp ``result.txt``.

vamp writes ``output_{i:06d}.npz`` (key ``output_0``) for line i of the datalist, and the
datalist line names the image: evalkit pairs them by that index and name, where VastAI's
``vamp_npz_decode.py`` zips the datalist with a sorted directory listing. A ``result.txt``
(5 lines per image: ``<path>: Relay top-<k> id: <id>, prob: <p>, class name: <name>``) is
scored by class id, not by class name (VastAI's ``eval_topk.py`` never credits class 480 and
credits both "crane" classes). ``write_inputs`` makes image2npz's inputs (uint8 CHW RGB at
the original size, key ``input_0``, in ``<wnid>/`` folders) and the datalist.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from evalkit.contract import K, BadOutput, Classes, Context, OfflineRuntime, Sample, decode_bgr, read_npy, read_text
from evalkit.errors import UserError

_OUTPUT = re.compile(r"^output_(\d+)\.npz$")
_RESULT_LINE = re.compile(r"^(?P<path>.+): Relay top-(?P<k>\d+) id: (?P<id>-?\d+), prob: (?P<prob>\S+), class name: .*$")


#: scores the logits a device wrote: no model file is read
MODEL_FROM = None


@dataclass
class Options:
    name: str = "vamp"
    #: vamp's --path_output folder of output_000000.npz files
    output_dir: Optional[str] = None
    #: the --datalist file vamp ran: one input npz path per line, line i -> output_{i:06d}.npz
    datalist: Optional[str] = None
    #: instead of output_dir + datalist: a vsx / vamp_npz_decode result.txt (top-5 per image)
    result_txt: Optional[str] = None
    #: images without a usable output count as wrong instead of failing the run
    allow_missing: bool = False


class VampNpz(OfflineRuntime):
    def __init__(self, options: Options, folder: Path, datalist: Path, num_outputs: int) -> None:
        self.folder, self.datalist = folder, datalist
        self.allow_missing = options.allow_missing
        self.num_outputs = num_outputs
        self.lines = [ln.strip() for ln in read_text(datalist, 'the vamp datalist').splitlines() if ln.strip()]

    def entries(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for i, line in enumerate(self.lines):
            path = self.folder / f"output_{i:06d}.npz"
            if path.is_file():
                found.setdefault(Path(line).stem, []).append(path)
        for path in self.folder.iterdir():
            m = _OUTPUT.match(path.name)
            if m and int(m[1]) >= len(self.lines):
                found.setdefault(f"<{path.name}: beyond the datalist's {len(self.lines)} lines>", []).append(path)
        return found

    def read(self, entry: Path) -> np.ndarray:
        """``output_0``, its npy header checked against the model's class count before its data is read."""
        try:
            with zipfile.ZipFile(entry) as npz:
                if "output_0.npy" not in npz.namelist():
                    keys = ", ".join(n.removesuffix(".npy") for n in npz.namelist())
                    raise BadOutput(f"{entry.name}: no 'output_0' (keys: {keys})")
                with npz.open("output_0.npy") as member:
                    return read_npy(member, self.num_outputs, f"{entry.name}: output_0")
        except (OSError, EOFError, ValueError, NotImplementedError, zipfile.BadZipFile, zlib.error) as e:
            raise BadOutput(f"{entry.name}: unreadable npz ({e})") from e

    def info(self) -> dict[str, Any]:
        return {"format": "vamp npz", "output_dir": str(self.folder), "datalist": str(self.datalist)}


class ResultTxt(OfflineRuntime):
    def __init__(self, options: Options, path: Path, num_classes: int) -> None:
        self.path = path
        self.num_classes = num_classes
        self.allow_missing = options.allow_missing
        self.runs: dict[str, list[dict[int, int]]] = {}
        for n, line in enumerate(read_text(path, 'result.txt').splitlines(), 1):
            if not line.strip():
                continue
            m = _RESULT_LINE.match(line.strip())
            if not m:
                raise UserError(f"{path}:{n}: not a result.txt line ('<path>: Relay top-<k> id: <id>, prob: <p>, class name: <name>')")
            runs = self.runs.setdefault(Path(m["path"]).stem, [])
            k = int(m["k"])
            # result.txt is opened in append mode: a repeated top-0 starts another run's block
            if not runs or k in runs[-1]:
                runs.append({})
            runs[-1][k] = int(m["id"])
        listed = max((len(run) for runs in self.runs.values() for run in runs), default=K)
        if listed < K:
            raise UserError(f"{path}: lists {listed} predictions per image (top-0..top-{listed - 1}), and top-{K} "
                            f"needs {K} (top-0..top-{K - 1}, as vamp_npz_decode.py and vsx write them): top-{listed + 1} "
                            f"to top-{K} cannot be scored from it; decode the outputs again with top-{K}")

    def entries(self) -> dict[str, list[Any]]:
        return {stem: list(runs) for stem, runs in self.runs.items()}

    def read(self, entry: dict[int, int]) -> np.ndarray:
        """The image's class ids best first: top-0..top-4 at least (fewer would score top-5 as if known)."""
        ranks = sorted(entry)
        if ranks != list(range(len(ranks))) or len(ranks) < K:
            raise BadOutput(f"top-k lines {ranks} are not 0..{max(K, len(ranks)) - 1}")
        ids = np.array([entry[k] for k in ranks], dtype=np.int64)
        if ((ids < 0) | (ids >= self.num_classes)).any():
            raise BadOutput(f"class ids {ids.tolist()} outside 0..{self.num_classes - 1}")
        return ids

    def info(self) -> dict[str, Any]:
        return {"format": "result.txt", "path": str(self.path)}


def open(options: Options, context: Context) -> OfflineRuntime:
    if options.result_txt:
        path = Path(options.result_txt).expanduser()
        if not path.is_file():
            raise UserError(f"runtime.result_txt={options.result_txt}: no such file")
        return ResultTxt(options, path, len(context.classes))
    if not options.output_dir or not options.datalist:
        raise UserError("runtime=vamp needs runtime.output_dir=DIR and runtime.datalist=FILE (or runtime.result_txt=FILE)")
    folder, datalist = Path(options.output_dir).expanduser(), Path(options.datalist).expanduser()
    if not folder.is_dir():
        raise UserError(f"runtime.output_dir={options.output_dir}: no such folder")
    if not datalist.is_file():
        raise UserError(f"runtime.datalist={options.datalist}: no such file")
    return VampNpz(options, folder, datalist, context.model.num_classes)


def _image2npz(data: bytes) -> np.ndarray:
    """image2npz.py: cv2 decode, BGR -> RGB, CHW uint8 at the original size."""
    return np.ascontiguousarray(decode_bgr(data)[:, :, ::-1].transpose(2, 0, 1))


def _npz_saver(classes: Classes):
    def save(folder: Path, sample: Sample, array: np.ndarray) -> Path:
        relative = Path(classes.wnids[sample.label]) / f"{sample.id}.npz"
        (folder / relative.parent).mkdir(exist_ok=True)
        np.savez(folder / relative, input_0=array)
        return relative
    return save


def write_inputs(context: Context, output: Path, progress: bool = True) -> list[Path]:
    """``output/<wnid>/<stem>.npz`` (key input_0) and ``<output>_datalist.txt`` (absolute paths, in order).

    The device resizes, crops and normalises (vdsp): the context's recipe and tensor cache are not used here.
    """
    samples = context.samples
    arrays = (a for a, _ in context.ordered(samples, _image2npz))
    written = context.write_each(samples, arrays, output, _npz_saver(context.classes), progress)
    datalist = output.parent / f"{output.name}_datalist.txt"
    datalist.write_text("".join(f"{p}\n" for p in written))
    return [output, datalist]
