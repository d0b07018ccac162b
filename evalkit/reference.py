"""Measured top-1/top-5 against the published numbers of the model config."""

from __future__ import annotations

import pandas as pd

from evalkit.config import Reference

#: the published numbers are on the full ILSVRC2012 validation set
VAL_IMAGES = 50_000


def compare(metrics: dict, references: list[Reference]) -> pd.DataFrame:
    """One row per published number: reference, measured, delta (points)."""
    rows = []
    for r in references:
        row = {"source": r.source, "setting": r.setting, "ref_top1": r.top1, "top1": metrics["top1"],
               "delta_top1": metrics["top1"] - r.top1, "ref_top5": r.top5, "top5": metrics["top5"],
               "delta_top5": None if r.top5 is None else metrics["top5"] - r.top5}
        rows.append(row)
    return pd.DataFrame(rows, columns=["source", "setting", "ref_top1", "top1", "delta_top1", "ref_top5", "top5", "delta_top5"])


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
    shown = table.drop(columns=["setting"])
    for col in ("delta_top1", "delta_top5"):
        shown[col] = [("-" if v is None or v != v else f"{v:+.3f}") for v in shown[col]]
    shown = shown.rename(columns={"ref_top1": "ref top-1", "delta_top1": "Δ top-1",
                                  "ref_top5": "ref top-5", "delta_top5": "Δ top-5"})
    lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    if not comparable(metrics["n"]):
        lines.append(f"note: {metrics['n']} images, not the {VAL_IMAGES} ILSVRC2012 validation images "
                     "the references were measured on; the deltas are not a verdict")
    return "\n".join(lines)
