"""``python -m evalkit.cache``: what evalkit keeps in its cache, and keeping it in bounds.

The cache (``cache_dir``: ``$EVALKIT_CACHE``, default ``~/.cache/evalkit``) holds one folder per kind: ``tensors``
(the recipes' pixels, about 7.5 GB per recipe for ImageNet val at 224), ``onnx`` (exports), ``precision``
(fp16/int8 transforms), ``trt`` and ``ort-tensorrt`` (engines), ``bisect``. An entry is what one key made: a
tensor cache's data, state and description files together, any other file or folder on its own. Its last use is
the newest time evalkit wrote or read it (evalkit touches an entry whenever a run uses it).

    python -m evalkit.cache                          # size per kind and per entry, with last use
    python -m evalkit.cache prune --older-than 30d   # or --max-gb 50: least recently used first
    python -m evalkit.cache verify                   # re-hash every entry; drop the corrupt ones

``cache.max_gb=N`` bounds it after every run, least recently used first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.contract import file_sha256
from evalkit.errors import UserError
from evalkit.tensorcache import row_checksum

#: a file holding the sha256 of the cache file it is named after (``x.onnx`` -> ``x.onnx.sha256``)
SIDECAR = ".sha256"
#: a tensor cache entry: ``<key>.u8``, ``<key>.state.npz``, ``<key>.json``
TENSOR_KEY = re.compile(r"^([0-9a-f]{24})\.")


@dataclass
class Entry:
    kind: str
    name: str
    paths: list[Path]
    #: what the entry is for: a model name, a recipe
    what: str

    @property
    def bytes(self) -> int:
        return sum(_size(p) for p in self.paths)

    @property
    def last_use(self) -> float:
        return max((_used(p) for p in self.paths), default=0.0)

    def remove(self) -> None:
        for p in self.paths:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _used(path: Path) -> float:
    st = path.stat()
    return max(st.st_mtime, st.st_atime)


def touch(path: Path) -> None:
    """Mark a cache entry used now (what ``prune`` and ``cache.max_gb`` go by): its access time, whatever the
    file system's atime policy; the modification time stays the time it was made."""
    try:
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
    except OSError:
        pass  # a read-only cache still serves


def write_sidecar(path: Path) -> None:
    """Record the sha256 of a cache file beside it, so ``verify`` can tell a damaged copy."""
    (path.parent / f"{path.name}{SIDECAR}").write_text(file_sha256(path) + "\n")


def entries(cache_dir: Path) -> list[Entry]:
    """Every entry of the cache, by kind."""
    found = []
    if not cache_dir.is_dir():
        return found
    for kind in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        grouped: dict[str, list[Path]] = {}
        for path in sorted(kind.iterdir()):
            if path.name.endswith(SIDECAR):
                continue
            match = TENSOR_KEY.match(path.name) if kind.name == "tensors" else None
            grouped.setdefault(match[1] if match else path.name, []).append(path)
        for name, paths in grouped.items():
            sidecars = [p.parent / f"{p.name}{SIDECAR}" for p in paths]
            found.append(Entry(kind.name, name, paths + [s for s in sidecars if s.exists()], _what(kind.name, name, paths)))
    return found


def _what(kind: str, name: str, paths: list[Path]) -> str:
    if kind == "tensors":
        described = next((p for p in paths if p.suffix == ".json"), None)
        if described is not None:
            try:
                info = json.loads(described.read_text())
                return f"{info['family']} recipe {info['recipe']}, {info['shape'][0]} images"
            except (OSError, ValueError, KeyError, IndexError):
                pass
        return "recipe pixels"
    return name.rsplit("-", 1)[0] if "-" in name else name


def table(cache_dir: Path) -> pd.DataFrame:
    rows = [{"kind": e.kind, "entry": e.name, "what": e.what, "gb": e.bytes / 1e9,
             "last_use": pd.Timestamp(e.last_use, unit="s").strftime("%Y-%m-%d %H:%M")} for e in entries(cache_dir)]
    return pd.DataFrame(rows, columns=["kind", "entry", "what", "gb", "last_use"])


def prune(cache_dir: Path, older_than_s: float | None = None, max_gb: float | None = None) -> tuple[list[Entry], int]:
    """Remove the entries unused for ``older_than_s``, then the least recently used until at most ``max_gb``:
    (the entries removed, the bytes freed)."""
    found = sorted(entries(cache_dir), key=lambda e: e.last_use)
    removed = []
    if older_than_s is not None:
        cutoff = time.time() - older_than_s
        removed += [e for e in found if e.last_use < cutoff]
    kept = [e for e in found if e not in removed]
    if max_gb is not None:
        total = sum(e.bytes for e in kept)
        while kept and total > max_gb * 1e9:
            oldest = kept.pop(0)
            total -= oldest.bytes
            removed.append(oldest)
    freed = sum(e.bytes for e in removed)
    for e in removed:
        e.remove()
    return removed, freed


def verify(cache_dir: Path) -> tuple[list[Entry], list[Entry]]:
    """Re-hash every entry that records hashes: (entries found corrupt and removed, entries with nothing to check)."""
    corrupt, unchecked = [], []
    for e in entries(cache_dir):
        ok = _verify_tensors(e) if e.kind == "tensors" else _verify_sidecars(e)
        if ok is None:
            unchecked.append(e)
        elif not ok:
            e.remove()
            corrupt.append(e)
    return corrupt, unchecked


def _verify_sidecars(e: Entry) -> bool | None:
    checked = [(p, p.parent / f"{p.name}{SIDECAR}") for p in e.paths if p.is_file() and not p.name.endswith(SIDECAR)]
    checked = [(p, s) for p, s in checked if s.exists()]
    if not checked:
        return None
    return all(file_sha256(p) == s.read_text().strip() for p, s in checked)


def _verify_tensors(e: Entry) -> bool | None:
    """Every row marked done is whole and matches its checksum."""
    data = next((p for p in e.paths if p.suffix == ".u8"), None)
    state = next((p for p in e.paths if p.name.endswith(".state.npz")), None)
    described = next((p for p in e.paths if p.suffix == ".json"), None)
    if data is None or state is None or described is None:
        return None
    try:
        shape = json.loads(described.read_text())["shape"]
        with np.load(state, allow_pickle=False) as st:
            done, check = st["done"], st["check"]
    except (OSError, ValueError, KeyError):
        return False
    row_bytes = int(np.prod(shape[1:]))
    with open(data, "rb") as f:
        for index in np.flatnonzero(done):
            row = os.pread(f.fileno(), row_bytes, int(index) * row_bytes)
            if len(row) != row_bytes or row_checksum(row) != check[index].tobytes():
                return False
    return True


def duration_s(text: str) -> float:
    """``30d``, ``12h``, ``90m`` -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([dhm])", text.strip())
    if not m:
        raise UserError(f"--older-than {text}: give a number of days, hours or minutes, e.g. 30d, 12h, 90m")
    return float(m[1]) * {"d": 86400, "h": 3600, "m": 60}[m[2]]


def default_dir() -> Path:
    """The cache folder the run uses when ``cache_dir`` is not given (``$EVALKIT_CACHE`` or ~/.cache/evalkit)."""
    return Path(os.environ.get("EVALKIT_CACHE") or Path.home() / ".cache" / "evalkit").expanduser()


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import exit_on_user_error

    parser = argparse.ArgumentParser(
        prog="python -m evalkit.cache", description="See, bound and check evalkit's cache.",
        epilog="example: python -m evalkit.cache prune --older-than 30d --max-gb 50")
    parser.add_argument("action", nargs="?", choices=["list", "prune", "verify"], default="list")
    parser.add_argument("--dir", help="the cache folder (default: $EVALKIT_CACHE or ~/.cache/evalkit)")
    parser.add_argument("--older-than", help="prune: entries not used for this long (30d, 12h, 90m)")
    parser.add_argument("--max-gb", type=float, help="prune: then the least recently used until at most this size")
    args = parser.parse_args(argv)

    def run() -> None:
        folder = Path(args.dir).expanduser() if args.dir else default_dir()
        if args.action == "prune":
            if args.older_than is None and args.max_gb is None:
                raise UserError("prune needs --older-than AGE and/or --max-gb SIZE")
            removed, freed = prune(folder, duration_s(args.older_than) if args.older_than else None, args.max_gb)
            print(f"removed {len(removed)} entries, {freed / 1e9:.3f} GB"
                  + "".join(f"\n  {e.kind}/{e.name}" for e in removed))
        elif args.action == "verify":
            corrupt, unchecked = verify(folder)
            print(f"{len(corrupt)} corrupt entries removed" + "".join(f"\n  {e.kind}/{e.name}" for e in corrupt)
                  + (f"\n{len(unchecked)} entries record no hash to check them by" if unchecked else ""))
        else:
            found = table(folder)
            if found.empty:
                print(f"{folder}: empty")
                return
            print(f"{folder}: {found['gb'].sum():.2f} GB")
            print(found.groupby("kind")["gb"].sum().to_string(float_format=lambda v: f"{v:.3f} GB"))
            print()
            print(found.sort_values("last_use", ascending=False).to_string(
                index=False, float_format=lambda v: f"{v:.3f}"))

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
