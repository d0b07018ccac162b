"""Per-image results saved while a run goes, so an interrupted run resumes where it stopped.

A run's finished images are appended every few seconds to ``<results>/.partial/<key>/``
(one small npz per save, each written whole, then renamed), keyed by everything that
decides the predictions: the resolved config and the sample list. ``resume=true`` scores
only the images not saved yet; a run that completes removes its partial folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: config keys that do not change a run's predictions
IGNORED = ("results", "progress", "resume", "workers", "cache", "cache_dir")


def key(resolved: dict[str, Any], list_fingerprint: str) -> str:
    relevant = {k: v for k, v in resolved.items() if k not in IGNORED}
    return hashlib.sha256(json.dumps([relevant, list_fingerprint], sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpoint:
    def __init__(self, folder: Path, every_s: float = 5.0) -> None:
        self.folder, self.every_s = folder, every_s
        self._pending: list[dict[str, np.ndarray]] = []
        self._last = time.monotonic()

    def load(self) -> dict[str, np.ndarray] | None:
        """Everything saved so far, or None."""
        parts = sorted(self.folder.glob("part-*.npz"))
        if not parts:
            return None
        loaded = []
        for p in parts:
            with np.load(p, allow_pickle=False) as z:
                loaded.append({k: z[k] for k in z.files})
        return {k: np.concatenate([part[k] for part in loaded]) for k in loaded[0]}

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def add(self, ids: list[str], top: np.ndarray, digests: np.ndarray, logits: np.ndarray | None,
            bad: list[str]) -> None:
        """One finished batch; ``bad`` holds, per image, why it could not be used ("" when it was)."""
        part = {"ids": np.array(ids, dtype=str), "top": top, "digests": digests, "bad": np.array(bad, dtype=str)}
        if logits is not None:
            part["logits"] = np.asarray(logits, np.float32)
        self._pending.append(part)
        if time.monotonic() - self._last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Write what finished since the last save as one more part (temp file, then rename)."""
        self._last = time.monotonic()
        if not self._pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        merged = {k: np.concatenate([p[k] for p in self._pending]) for k in self._pending[0]}
        n = len(list(self.folder.glob("part-*.npz")))
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **merged)
        os.replace(tmp, self.folder / f"part-{n:06d}.npz")
        self._pending.clear()
