"""The preprocessed-tensor cache: every sample's recipe pixels (uint8 HWC) in one file on disk.

Keyed by the recipe fingerprint and the sample list (ids and paths, and where a tar member
lies in its shard), so a second runtime evaluated with the same recipe skips decoding entirely.
A row counts only once it is marked done and its image file (a member's: its shard) still has
the size and mtime recorded when it was made:
an interrupted fill resumes where it stopped, and a changed image is made again.
Every row carries a checksum of its bytes, saved with its done flag and verified on every read:
a row the file no longer holds whole (truncated, a flipped bit, zeroed) is counted as repaired
and made again, never scored. Writes check their byte counts, so a short write is never marked done.
Workers write rows with ``pwrite`` and the reader uses ``pread``, so memory stays flat
however many images there are.
"""

from __future__ import annotations

import errno
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
#: bytes of a row's checksum
CHECK_BYTES = 16


def row_checksum(row: bytes | memoryview) -> bytes:
    """BLAKE2b of a row's bytes: what proves, on read, that the row is the one that was written."""
    return hashlib.blake2b(row, digest_size=CHECK_BYTES).digest()


def write_row(fd: int, row: bytes, offset: int) -> None:
    """Write all of ``row`` at ``offset``: a short write continues where it stopped, and what stops it
    (a full disk: ENOSPC, a file size limit: EFBIG) raises, so the row is never marked done."""
    view = memoryview(row)
    while view:
        written = os.pwrite(fd, view, offset)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[written:], offset + written


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
        self.data.touch()  # rows are written in place; a row past the end of the file is simply not there yet
        self.done = np.zeros(self.n, bool)
        self.stat = np.zeros((self.n, 2), np.int64)
        self.digest = np.zeros((self.n, 32), np.uint8)
        self.check = np.zeros((self.n, CHECK_BYTES), np.uint8)
        #: rows marked done that failed verification (short file or checksum) and are made again
        self.repaired = 0
        if self.state_path.is_file():
            self._load_state()
        (folder / f"{self.key}.json").write_text(json.dumps(
            {"recipe": recipe.fingerprint, "family": recipe.family, "shape": [self.n, *self.shape]}))
        self._unsaved = 0

    def _load_state(self) -> None:
        """The saved flags; then rows marked done that the data file no longer reaches are unmarked (repaired)."""
        try:
            with np.load(self.state_path, allow_pickle=False) as st:
                if st["done"].shape != (self.n,):
                    return
                if "check" not in st.files:
                    print(f"note: tensor cache {self.data} has no row checksums (made by an older evalkit); "
                          "its rows are made again")
                    return
                self.done, self.stat = st["done"].copy(), st["stat"].copy()
                self.digest, self.check = st["digest"].copy(), st["check"].copy()
        except (OSError, ValueError, KeyError):
            return  # a damaged state file: every row is made again
        cut = self.done & (np.arange(self.n) >= self.data.stat().st_size // self.row_bytes)
        self.done[cut] = False
        self.repaired += int(cut.sum())

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

    def mark(self, i: int, stat: tuple[int, int], digest: bytes, check: bytes) -> None:
        """Row ``i`` is written whole: its image's stat and sha256, and the row's checksum."""
        self.done[i], self.stat[i] = True, stat
        self.digest[i], self.check[i] = np.frombuffer(digest, np.uint8), np.frombuffer(check, np.uint8)
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write the done flags and checksums atomically (temp file, then rename)."""
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, done=self.done, stat=self.stat, digest=self.digest, check=self.check)
        os.replace(tmp, self.state_path)
        self._unsaved = 0

    def read(self, fd: int, index: int) -> np.ndarray | None:
        """Row ``index`` if it is whole and matches its checksum; otherwise None, and the row is unmarked
        and counted as repaired (the caller makes it again)."""
        buf = os.pread(fd, self.row_bytes, index * self.row_bytes)
        if len(buf) == self.row_bytes and row_checksum(buf) == self.check[index].tobytes():
            return np.frombuffer(buf, np.uint8).reshape(self.shape)
        self.done[index] = False
        self.repaired += 1
        return None

    def remove(self) -> None:
        for p in self.data.parent.glob(f"{self.key}.*"):
            p.unlink(missing_ok=True)
