"""The streaming scorer: each image's top-5 predictions (stable tie-break), fed to the run's metric plug-ins.

Keeps only each image's top-5 indices, never all logits; the metrics see each batch's logits as it passes.
``annotate`` names the classes of the scored predictions (and their probabilities, where the logits were kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.special import softmax

from evalkit.contract import GROUPS, K, DatasetOptions, Scored, load
from evalkit.classes import imagenet1k
from evalkit.errors import UserError


@dataclass
class Result:
    metrics: dict
    predictions: pd.DataFrame
    per_class: pd.DataFrame


class Scorer:
    def __init__(self, metrics: Sequence[str], num_classes: int = 1000, dataset: DatasetOptions | None = None,
                 label_space: Sequence[int] | None = None) -> None:
        """``metrics``: names in the ``evalkit.metrics`` entry points (the config's ``metrics`` list), opened with
        the run's ``dataset`` options. ``label_space``: the classes a set covers when it covers fewer (ImageNet-A/R):
        the other classes' logits are set to -inf before top-k, as those sets are scored."""
        self.num_classes = num_classes
        dataset = dataset or DatasetOptions()
        self.metrics = [load(GROUPS["metric"], name).open(imagenet1k(), dataset) for name in metrics]
        self.outside = None
        if label_space is not None:
            self.outside = np.ones(num_classes, bool)
            self.outside[list(label_space)] = False
        self.background_class: bool | None = None
        self._ids: list[str] = []
        self._labels: list[np.ndarray] = []
        self._top: list[np.ndarray] = []

    def update(self, ids: list[str], labels: np.ndarray, logits: np.ndarray,
               invalid: np.ndarray | None = None) -> np.ndarray:
        """Score one batch and return its top-5 indices; a 1001-class head (background at index 0) is
        shifted to the 1000 classes. ``invalid`` rows (images that could not be used) get no prediction."""
        logits = np.asarray(logits)
        if logits.ndim != 2 or len(logits) != len(ids):
            raise UserError(f"the model returned shape {logits.shape} for {len(ids)} images; expected [N, {self.num_classes}]")
        c = logits.shape[1]
        if c == self.num_classes + 1:
            logits = logits[:, 1:]
        elif c != self.num_classes:
            raise UserError(
                f"the model has {c} outputs but the dataset has {self.num_classes} classes "
                f"(or {self.num_classes + 1} with background at index 0); check that the model is an ImageNet-1k classifier"
            )
        self.background_class = c == self.num_classes + 1
        if self.outside is not None:
            logits = np.where(self.outside, -np.inf, logits).astype(logits.dtype, copy=False)
        invalid = np.zeros(len(ids), bool) if invalid is None else np.asarray(invalid, bool)
        bad = ~np.isfinite(logits if self.outside is None else logits[:, ~self.outside]).all(axis=1) & ~invalid
        if bad.any():
            names = [i for i, b in zip(ids, bad) if b][:5]
            raise UserError(f"{int(bad.sum())} images got NaN/Inf logits (e.g. {names}); the model or its inputs are broken")
        # Stable sort: on exactly tied logits the lower class index ranks first.
        top = np.argsort(-logits, axis=1, kind="stable")[:, :K].astype(np.int32)
        top[invalid] = -1  # whatever the model made of a blank input
        return self.update_topk(ids, labels, top, logits)

    def update_topk(self, ids: list[str], labels: np.ndarray, top: np.ndarray,
                    logits: np.ndarray | None = None) -> np.ndarray:
        """Score predictions given as class indices, best first (-1 = no prediction: counts as wrong)."""
        top = np.asarray(top, dtype=np.int32)
        if top.shape[1] < K:
            top = np.concatenate([top, np.full((len(top), K - top.shape[1]), -1, np.int32)], axis=1)
        top, labels = top[:, :K], np.asarray(labels, dtype=np.int64)
        self._top.append(top)
        self._labels.append(labels)
        self._ids.extend(ids)
        for metric in self.metrics:
            metric.update(Scored(list(ids), labels, top, logits))
        return top

    def rows(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, labels, top-5) scored so far, in order."""
        if not self._ids:
            return [], np.zeros(0, np.int64), np.zeros((0, K), np.int32)
        return list(self._ids), np.concatenate(self._labels), np.concatenate(self._top)

    def result(self) -> Result:
        if not self._ids:
            raise UserError("no images were scored")
        top = np.concatenate(self._top)
        labels = np.concatenate(self._labels)
        hit_rank = np.where(top == labels[:, None], np.arange(K), K).min(axis=1)  # K = not in top-5
        metrics: dict = {"n": len(labels)}
        for metric in self.metrics:
            metrics.update(metric.result())
        metrics["background_class"] = bool(self.background_class)
        metrics["no_prediction"] = int((top[:, 0] < 0).sum())
        predictions = pd.DataFrame({"id": self._ids, "label": labels})
        for k in range(K):
            predictions[f"pred{k + 1}"] = top[:, k]
        per_class = (
            pd.DataFrame({"label": labels, "top1": hit_rank == 0, "top5": hit_rank < K})
            .groupby("label").agg(n=("top1", "size"), top1=("top1", "mean"), top5=("top5", "mean"))
        )
        per_class[["top1", "top5"]] *= 100.0
        per_class = per_class.reset_index()
        classes = imagenet1k()  # a table of indices alone sends every reader to the class list
        per_class.insert(1, "wnid", [classes.wnids[i] for i in per_class["label"]])
        per_class.insert(2, "class_name", [classes.names[i] for i in per_class["label"]])
        return Result(metrics, predictions, per_class)


def annotate(predictions: pd.DataFrame, logits: np.ndarray | None = None,
             label_space: Sequence[int] | None = None) -> pd.DataFrame:
    """``predictions`` (id, label, [path,] pred1..pred5) with the true class as ``wnid`` and ``class_name``, and with
    ``prob1..prob5`` (softmax over the classes the set covers) when the logits were kept: a person reading a flip
    sees what the image is and how sure each run was, without the class list or logits.npy at hand."""
    classes = imagenet1k()
    labels = predictions["label"].to_numpy()
    out = predictions.assign(wnid=[classes.wnids[i] for i in labels], class_name=[classes.names[i] for i in labels])
    if logits is None:
        return out
    logits = np.asarray(logits, np.float64)
    if logits.shape[1] == len(classes) + 1:  # background at index 0, as scored
        logits = logits[:, 1:]
    if label_space is not None:
        outside = np.ones(logits.shape[1], bool)
        outside[list(label_space)] = False
        logits = np.where(outside, -np.inf, logits)
    top = predictions[[f"pred{k + 1}" for k in range(K)]].to_numpy()
    probs = np.take_along_axis(softmax(logits, axis=1), np.maximum(top, 0), axis=1)
    probs[top < 0] = np.nan  # no prediction
    return out.assign(**{f"prob{k + 1}": probs[:, k].astype(np.float32) for k in range(K)})
