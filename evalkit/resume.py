"""Resuming an interrupted run: per-image results saved while a run goes, and the run's rows put back together.

A run's finished images are appended every few seconds to ``<results>/.partial/<key>/``
(one small npz per save, each written whole, then renamed), keyed by everything that
decides the predictions: the resolved config and the sample list. ``resume=true`` scores
only the images not saved yet (``evaluate``); a run that completes removes its partial folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from evalkit import pipeline
from evalkit.config import Config
from evalkit.contract import Recipe, Runtime, Sample
from evalkit.scoring import Scorer

#: config keys that do not change a run's predictions
IGNORED = ("results", "progress", "resume", "workers", "cache", "cache_dir")


def key(resolved: dict[str, Any], list_fingerprint: str) -> str:
    relevant = {k: v for k, v in resolved.items() if k not in IGNORED}
    return hashlib.sha256(json.dumps([relevant, list_fingerprint], sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder(cfg: Config, resolved: dict[str, Any], list_fingerprint: str) -> Path:
    """Where a run of this configuration and sample list keeps its finished images until its folder lands."""
    return Path(cfg.results.dir) / ".partial" / key(resolved, list_fingerprint)


def file_stat(sample: Sample) -> tuple[int, int]:
    """(size, mtime) of the file the image is read from (a tar member's: its shard); (-1, -1) when it is gone."""
    try:
        st = os.stat(sample.path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


class Checkpoint:
    def __init__(self, folder: Path, every_s: float = 5.0, samples: list[Sample] | None = None) -> None:
        self.folder, self.every_s = folder, every_s
        self.samples = {s.id: s for s in samples or []}
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
        # each file's size and mtime now: what resume=true compares to know which images to hash again
        stats = np.array([file_stat(self.samples[i]) if i in self.samples else (-1, -1) for i in ids], np.int64)
        part = {"ids": np.array(ids, dtype=str), "top": top, "digests": digests, "bad": np.array(bad, dtype=str),
                "stats": stats.reshape(len(ids), 2)}
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


def evaluate(cfg: Config, resolved: dict, samples: list, list_fingerprint: str, recipe: Recipe,
             runtime: Runtime, batch_size: int, num_classes: int, tensor_cache: Path | None,
             label_space: list[int] | None = None) -> pipeline.Outcome:
    """The online pipeline with a checkpoint: ``resume=true`` scores only what an interrupted run left, and what
    changed since. The checkpoint stays until the caller has landed the run (``Checkpoint.clear``): a failure
    after scoring loses nothing."""
    ckpt = Checkpoint(folder(cfg, resolved, list_fingerprint), every_s=cfg.results.checkpoint_s, samples=samples)
    prior = ckpt.load()
    if not cfg.resume and prior is not None:
        print("note: an interrupted run of this configuration exists; starting over (resume=true continues it)")
        ckpt.clear()
        prior = None
    done = {} if prior is None else unchanged(samples, prior)
    if cfg.resume:
        print(f"resuming: {len(done)} of {len(samples)} images already scored")
    todo = [s for s in samples if s.id not in done]
    scorer = Scorer(cfg.metrics, num_classes, cfg.dataset, label_space)
    outcome = pipeline.evaluate(todo, recipe, runtime, batch_size, scorer, workers=cfg.workers,
                                progress=cfg.progress, keep_logits=cfg.results.save_logits,
                                cache_dir=tensor_cache, bad_images=cfg.dataset.bad_images, checkpoint=ckpt,
                                decode_device=runtime.decode_device if cfg.dataset.decode == "gpu" else None)
    if prior is not None:
        outcome = combine(samples, todo, outcome, prior, done, Scorer(cfg.metrics, num_classes, cfg.dataset, label_space))
    return outcome


def unchanged(samples: list[Sample], prior: dict[str, np.ndarray]) -> dict[str, int]:
    """id -> row of the saved images whose content is what was scored: a file whose size or mtime differs from
    the checkpoint's is hashed again, and scored again when its bytes changed (the latest save of an image wins)."""
    saved = {i: k for k, i in enumerate(prior["ids"])}
    stats = prior.get("stats")
    done, changed = {}, 0
    for sample in samples:
        k = saved.get(sample.id)
        if k is None:
            continue
        if stats is None or tuple(stats[k]) != file_stat(sample):
            try:
                same = hashlib.sha256(sample.read()).digest() == bytes(prior["digests"][k])
            except OSError:
                same = False
            if not same:
                changed += 1
                continue
        done[sample.id] = k
    if changed:
        print(f"resume: {changed} image(s) changed since they were scored; scoring them again", file=sys.stderr)
    return done


def combine(samples: list, todo: list, new: pipeline.Outcome, prior: dict, done: dict[str, int],
            scorer: Scorer) -> pipeline.Outcome:
    """The saved rows and the new ones, in sample order, as if the run had never stopped; ``scorer`` is empty."""
    position = {s.id: k for k, s in enumerate(todo)}

    def interleave(saved: np.ndarray, made: np.ndarray | None) -> np.ndarray:
        return np.stack([saved[done[s.id]] if s.id in done else made[position[s.id]] for s in samples])

    top = interleave(prior["top"], new.scorer.rows()[2])
    digests = interleave(prior["digests"], new.digests)
    logits = None
    if "logits" in prior and (new.logits is not None or not todo):
        logits = interleave(prior["logits"], new.logits)
    scorer.update_topk([s.id for s in samples], np.array([s.label for s in samples]), top)
    scorer.background_class = new.scorer.background_class if todo else None
    saved_bad = {i: reason for i, reason in zip(prior["ids"], prior.get("bad", ())) if reason}
    bad = {s.id: saved_bad.get(s.id) or new.bad[s.id] for s in samples if s.id in saved_bad or s.id in new.bad}
    return pipeline.Outcome(scorer, digests, logits, bad, new.repaired)
