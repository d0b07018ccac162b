"""Samples -> prepared batches -> runtime -> scorer: the evaluation loops.

Online runtimes: worker processes decode and prepare images into the tensor cache
(``evalkit.prepare``) while the runtime scores finished batches in sample order; a helper
thread normalises the next batch during inference. Offline runtimes: the device's outputs,
matched by file name. Resuming an interrupted run is ``evalkit.resume``.
"""

from __future__ import annotations

import hashlib
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator, Protocol

import numpy as np
from evalkit.contract import K, BadOutput, OfflineRuntime, Recipe, Runtime, Sample
from evalkit.errors import UserError
from evalkit.prepare import DeviceDecoded, Prepared
from evalkit.progress import bar as progress_bar
from evalkit.scoring import Scorer
from evalkit.workers import default_workers


class BatchSink(Protocol):
    """Receives every finished batch of an evaluation (``evalkit.resume.Checkpoint`` saves them)."""

    def add(self, ids: list[str], top: np.ndarray, digests: np.ndarray, logits: np.ndarray | None,
            bad: list[str]) -> None: ...

    def flush(self) -> None: ...


@dataclass
class Outcome:
    scorer: Scorer
    #: sha256 of each image file, in sample order (None where the images were not read:
    #: offline runtimes score the device's outputs)
    digests: np.ndarray | None
    logits: np.ndarray | None
    #: images that could not be used and were counted wrong (dataset.bad_images=count_wrong): id -> reason
    bad: dict[str, str] = field(default_factory=dict)
    #: tensor-cache rows that failed verification and were prepared again from their images
    repaired: int = 0


def content_fingerprint(samples: list[Sample], digests: np.ndarray) -> str:
    """sha256 over every image's id, label and bytes: identifies the data actually scored."""
    content = hashlib.sha256()
    for s, digest in zip(samples, digests):
        content.update(f"{s.id}\t{s.label}\t".encode() + digest.tobytes())
    return content.hexdigest()[:16]


def _batches(prepared: Prepared | DeviceDecoded, bounds: list[tuple[int, int]], normalize: bool
             ) -> Generator[np.ndarray, None, None]:
    """The batches in order; a helper thread makes the next one (normalising it) while the runtime works."""
    with ThreadPoolExecutor(1) as helper:
        upcoming = helper.submit(prepared.batch, *bounds[0], normalize) if bounds else None
        for k in range(len(bounds)):
            batch = upcoming.result()
            upcoming = helper.submit(prepared.batch, *bounds[k + 1], normalize) if k + 1 < len(bounds) else None
            yield batch


def evaluate(samples: list[Sample], recipe: Recipe, runtime: Runtime, batch_size: int, scorer: Scorer,
             workers: int = 0, progress: bool = True, keep_logits: bool = False,
             cache_dir: Path | None = None, bad_images: str = "fail", checkpoint: BatchSink | None = None,
             decode_device: str | None = None) -> Outcome:
    """Decode in worker processes into the tensor cache, while the runtime scores finished batches in order.

    A helper thread normalises the next batch during inference. ``bad_images`` "count_wrong" scores an
    undecodable image as wrong instead of failing the run. ``checkpoint`` receives every finished batch.
    ``decode_device`` (``dataset.decode=gpu``): the images are decoded there by the recipe instead, no cache.
    Worker processes start from a fork server: a script that calls this needs the usual
    ``if __name__ == "__main__":`` guard (notebooks and ``python -m evalkit`` do not).
    """
    workers = workers or default_workers()
    kept = []
    bar = progress_bar(total=len(samples), disable=not progress)
    bounds = [(lo, min(lo + batch_size, len(samples))) for lo in range(0, len(samples), batch_size)]
    prepared: Prepared | DeviceDecoded = (
        DeviceDecoded(samples, recipe, decode_device, workers, bad_images) if decode_device is not None else
        Prepared(samples, recipe, cache_dir, workers, bad_images, chunk=max(1, min(8, batch_size // workers or 1))))
    batches = _batches(prepared, bounds, normalize=not runtime.takes_pixels)
    results = runtime.stream(batches)
    try:
        for (lo, hi), logits in zip(bounds, results):
            ids = [s.id for s in samples[lo:hi]]
            invalid = np.array([i in prepared.bad for i in range(lo, hi)])
            top = scorer.update(ids, np.array([s.label for s in samples[lo:hi]]), logits, invalid)
            if keep_logits:
                kept.append(np.asarray(logits, dtype=np.float32))
            if checkpoint is not None:
                checkpoint.add(ids, top, prepared.digest[lo:hi].copy(), kept[-1] if keep_logits else None,
                               [prepared.bad.get(i, "") for i in range(lo, hi)])
            bar.update(hi - lo)
    finally:
        results.close()
        batches.close()  # its helper thread is done before the cache closes
        bar.close()
        if checkpoint is not None:
            checkpoint.flush()
        prepared.close()
    return Outcome(scorer, prepared.digest.copy(), np.concatenate(kept) if keep_logits and kept else None,
                   {samples[i].id: reason for i, reason in sorted(prepared.bad.items())},
                   prepared.repaired if isinstance(prepared, Prepared) else 0)


@dataclass
class DumpReport:
    """What the device's outputs held, against the dataset: every problem by count and example names."""

    outputs: int
    missing: list[str]
    extra: list[str]
    unusable: dict[str, str]
    counted_wrong: bool

    def record(self, examples: int = 5) -> dict:
        return {"outputs": self.outputs, "missing": len(self.missing), "missing_examples": self.missing[:examples],
                "extra": len(self.extra), "extra_examples": self.extra[:examples],
                "unusable": len(self.unusable), "unusable_examples": dict(list(self.unusable.items())[:examples]),
                "counted_wrong": self.counted_wrong}

    def problems(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} images have no output (e.g. {', '.join(self.missing[:3])})")
        if self.unusable:
            parts.append(f"{len(self.unusable)} outputs are unusable (e.g. " + "; ".join(
                f"{k}: {v}" for k, v in list(self.unusable.items())[:3]) + ")")
        return "; ".join(parts)


def _check_scores(scores: np.ndarray, expected: int) -> None:
    if scores.size != expected:
        raise BadOutput(f"{scores.size} values, expected {expected}, the model's class count (model.num_classes; "
                        "1001 for a head with background at index 0)")
    if not np.isfinite(scores).all():
        raise BadOutput("NaN/Inf values")


def evaluate_offline(samples: list[Sample], runtime: OfflineRuntime, scorer: Scorer,
                     progress: bool = True) -> tuple[Scorer, DumpReport]:
    """Score the outputs a device wrote, each matched to its image by file name, never by position."""
    entries = runtime.entries()
    wanted = {s.id for s in samples}
    duplicate = {i: v for i, v in entries.items() if i in wanted and len(v) > 1}
    if duplicate:
        first = next(iter(duplicate))
        raise UserError(f"{len(duplicate)} images have more than one output (e.g. {first}: "
                        f"{', '.join(map(str, duplicate[first]))}); keep one dump per image, or set runtime.format")
    expected = runtime.num_outputs or scorer.num_classes  # one output's fault is its own: no width from the others
    missing, unusable = [], {}
    batch: list[tuple[Sample, np.ndarray]] = []

    def flush() -> None:
        """Score the batch in sample order (the run pairs predictions with the samples' paths by position): each
        run of scores, then each run of class indices (an unusable output's -1s among them)."""
        for scores, run in itertools.groupby(batch, key=lambda so: so[1].dtype.kind == "f"):
            samples_, outputs = zip(*run)
            ids, labels = [s.id for s in samples_], np.array([s.label for s in samples_])
            if scores:
                scorer.update(ids, labels, np.stack(outputs))
            else:
                scorer.update_topk(ids, labels, np.stack([np.append(o[:K], [-1] * K)[:K] for o in outputs]))
        batch.clear()

    for sample in progress_bar(samples, disable=not progress):
        output = None
        if sample.id not in entries:
            missing.append(sample.id)
        else:
            try:
                output = runtime.read(entries[sample.id][0])
                if output.dtype.kind == "f":
                    output = output.astype(np.float32).ravel()
                    _check_scores(output, expected)
            except BadOutput as e:
                unusable[sample.id] = str(e)
                output = None
        batch.append((sample, output if output is not None else np.full(K, -1, np.int32)))
        if len(batch) == 256:
            flush()
    if batch:
        flush()
    report = DumpReport(sum(len(v) for v in entries.values()), missing, sorted(set(entries) - wanted),
                        unusable, runtime.allow_missing)
    if (missing or unusable) and not runtime.allow_missing:
        raise UserError(f"{report.problems()}; fix the dump, or set runtime.allow_missing=true to count them as wrong")
    return scorer, report
