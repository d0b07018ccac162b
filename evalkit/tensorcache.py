"""The preprocessed-tensor cache: every sample's recipe pixels (uint8 HWC) in one file on disk.

Keyed by the recipe fingerprint and the sample list (ids and paths, and where a tar member
lies in its shard), so a second runtime evaluated with the same recipe skips decoding entirely.
A row counts only once it is marked done and its image file (a member's: its shard) still has
the size and mtime recorded when it was made:
an interrupted fill resumes where it stopped, and a changed image is made again.
Workers write rows with ``pwrite`` and the reader uses ``pread``, so memory stays flat
however many images there are.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from evalkit.dataset import Sample
from evalkit.preprocess import Recipe

#: persist the done flags at least this often (rows), so an interruption loses little work
SAVE_EVERY = 512


class TensorCache:
    def __init__(self, folder: Path, recipe: Recipe, samples: list[Sample]) -> None:
        ident = hashlib.sha256(recipe.fingerprint.encode())
        for s in samples:
            # a plain file's line is unchanged from before members existed, so existing caches stay valid
            member = "" if s.offset is None else f"\t{s.offset}\t{s.size}"
            ident.update(f"{s.id}\t{s.path}{member}\n".encode())
        self.key = ident.hexdigest()[:24]
        _, h, w = recipe.output_shape
        self.shape = (h, w, 3)
        self.row_bytes = h * w * 3
        self.n = len(samples)
        folder.mkdir(parents=True, exist_ok=True)
        self.data = folder / f"{self.key}.u8"
        self.state_path = folder / f"{self.key}.state.npz"
        if not self.data.exists() or self.data.stat().st_size != self.n * self.row_bytes:
            with open(self.data, "ab") as f:  # sparse file of the full size; rows are filled in place
                f.truncate(self.n * self.row_bytes)
        self.done = np.zeros(self.n, bool)
        self.stat = np.zeros((self.n, 2), np.int64)
        self.digest = np.zeros((self.n, 32), np.uint8)
        if self.state_path.is_file():
            try:
                with np.load(self.state_path, allow_pickle=False) as st:
                    if st["done"].shape == (self.n,):
                        self.done, self.stat, self.digest = st["done"].copy(), st["stat"].copy(), st["digest"].copy()
            except (OSError, ValueError, KeyError):
                pass  # a damaged state file: every row is made again
        (folder / f"{self.key}.json").write_text(json.dumps(
            {"recipe": recipe.fingerprint, "family": recipe.family, "shape": [self.n, *self.shape]}))
        self._unsaved = 0

    @staticmethod
    def file_stat(path: Path) -> tuple[int, int]:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns

    def missing(self, samples: list[Sample]) -> list[int]:
        """Rows to make: never done, or their image changed since."""
        todo = []
        for i, s in enumerate(samples):
            if not self.done[i]:
                todo.append(i)
                continue
            try:
                current = self.file_stat(s.path)
            except OSError:
                current = (-1, -1)
            if tuple(self.stat[i]) != current:
                self.done[i] = False
                todo.append(i)
        return todo

    def mark(self, i: int, stat: tuple[int, int], digest: bytes) -> None:
        self.done[i], self.stat[i], self.digest[i] = True, stat, np.frombuffer(digest, np.uint8)
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write the done flags atomically (temp file, then rename)."""
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, done=self.done, stat=self.stat, digest=self.digest)
        os.replace(tmp, self.state_path)
        self._unsaved = 0

    def read(self, fd: int, index: int) -> np.ndarray:
        buf = os.pread(fd, self.row_bytes, index * self.row_bytes)
        return np.frombuffer(buf, np.uint8).reshape(self.shape)

    def remove(self) -> None:
        for p in self.data.parent.glob(f"{self.key}.*"):
            p.unlink(missing_ok=True)
