"""Measured top-1/top-5 against the published numbers of the model config.

A reference is compared only where it applies: it must be this model's number
(``applies``) and the run's recipe must have the parameters it was measured at
(``recipe``). timm's cspresnext50 80.050 is at 224/0.875 while timm's current config
evaluates at 256/0.887; such a mismatch is reported, never silently compared.

An applicable reference is judged by one rule (``judge``), for the printed table and the
gate alike: a run on at least the reference's images fails below it by more than the
tolerance; a run on fewer fails only when its 95 % confidence interval of top-1 lies
entirely below that, otherwise it is "not comparable" (200 images give about +-4.5 points).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from evalkit.config import Reference
from evalkit.contract import VAL_SET

#: the published numbers are on the full ILSVRC2012 validation set
VAL_IMAGES = 50_000
#: points a run's top-1 may sit below a published reference (the gate's default)
TOLERANCE = 0.2


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def status(ref: Reference, recipe: dict[str, Any], test_set: str = VAL_SET) -> str:
    """'ok', or why this reference does not apply to a run with ``recipe`` on ``test_set``."""
    if not ref.applies:
        return "not this model" + (f": {ref.note}" if ref.note else "")
    if ref.test_set != test_set:
        return f"other test set: {test_set} (measured on {ref.test_set})"
    differ = [f"{k}={recipe.get(k)!r} (measured at {v!r})" for k, v in ref.recipe.items() if not _same(recipe.get(k), v)]
    return "other setting: " + ", ".join(differ) if differ else "ok"


@dataclass(frozen=True)
class Verdict:
    passed: bool | None  # None = not comparable: too few images to tell
    status: str


def judge(metrics: dict, ref_top1: float, ref_n: int, tolerance: float) -> Verdict:
    """The verdict on one applicable reference, from the run's top-1, n and stored 95 % CI (Wilson)."""
    n, floor = metrics["n"], ref_top1 - tolerance - 1e-9  # slack: 74.83 - 0.2 is not exactly 74.63 in floats
    if n >= ref_n:
        return Verdict(True, "ok") if metrics["top1"] >= floor else Verdict(False, "below reference")
    lo, hi = metrics["top1_ci95"]
    interval = f"(n={n}, 95 % CI {lo:.3f}–{hi:.3f})"
    if hi < floor:
        return Verdict(False, f"significantly worse {interval}")
    return Verdict(None, f"not comparable {interval}")


#: the columns of a reference table, as stored in run.json's ``reference.rows``
COLUMNS = ["source", "setting", "ref_top1", "top1", "delta_top1", "ref_top5", "top5", "delta_top5", "ref_n", "applies",
           "status"]


def measured(row: dict[str, Any], metrics: dict) -> dict[str, Any]:
    """A reference row with the measured values, deltas and verdict of ``metrics`` (its applicability kept)."""
    return {**row, "top1": metrics["top1"], "delta_top1": metrics["top1"] - row["ref_top1"], "top5": metrics["top5"],
            "delta_top5": None if row["ref_top5"] is None else metrics["top5"] - row["ref_top5"],
            "status": judge(metrics, row["ref_top1"], row["ref_n"], TOLERANCE).status if row["applies"] else row["status"]}


def compare(metrics: dict, references: list[Reference], recipe: dict[str, Any], test_set: str = VAL_SET
            ) -> pd.DataFrame:
    """One row per published number: reference, measured, delta (points), whether it applies, the verdict."""
    rows = []
    for r in references:
        why_not = status(r, recipe, test_set)
        rows.append(measured({"source": r.source, "setting": r.setting, "ref_top1": r.top1, "ref_top5": r.top5,
                              "ref_n": r.n, "applies": why_not == "ok", "status": why_not}, metrics))
    return pd.DataFrame(rows, columns=COLUMNS)


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as run.json stores it (JSON values: NaN as null)."""
    return json.loads(table.to_json(orient="records"))


def comparable(n: int) -> bool:
    """Published numbers only apply to a run over all 50,000 validation images."""
    return n == VAL_IMAGES


def format_table(metrics: dict, table: pd.DataFrame) -> str:
    """The summary printed after a run: measured accuracy, then the deltas to each reference."""
    lo, hi = metrics["top1_ci95"]
    lines = [
        f"top-1 {metrics['top1']:.3f}  top-5 {metrics['top5']:.3f}  "
        f"(n={metrics['n']}, top-1 95% CI {lo:.3f}..{hi:.3f})",
        "top-k: " + "  ".join(f"{k}:{metrics[f'top{k}']:.3f}" for k in range(1, 6)),
    ]
    if table.empty:
        lines.append("no published reference in the model config")
        return "\n".join(lines)
    shown = table.drop(columns=["setting", "top1", "top5", "ref_n", "applies"])
    for col in ("delta_top1", "delta_top5"):
        shown[col] = [("-" if v is None or v != v else f"{v:+.3f}") for v in shown[col]]
    shown = shown.rename(columns={"ref_top1": "ref top-1", "delta_top1": "Δ top-1",
                                  "ref_top5": "ref top-5", "delta_top5": "Δ top-5"})
    lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    fewer = table[table["applies"] & (table["ref_n"] > metrics["n"])]
    if not fewer.empty:
        lines.append(f"note: {metrics['n']} images, fewer than the {fewer['ref_n'].max()} a reference was measured on: "
                     f"it fails only when the whole 95 % CI of top-1 lies below it minus {TOLERANCE:g}, "
                     "otherwise it is not comparable")
    return "\n".join(lines)
