"""timm's results tables from evalkit runs, so a port's numbers sit beside timm's ``results/*.csv`` as they are.

One row per model (its latest run among those given), sorted as timm sorts them (top-1, then top-5, descending,
then model name), formatted as timm writes them. With a baseline (e.g. the ImageNet val runs, for a table of
ImageNet-ReaL or -V2 runs) the table gains timm's ``top1_diff,top5_diff,rank_diff`` columns.

    python -m evalkit.results --results results --format csv > results-imagenet.csv
    python -m evalkit.results results-v2/ --baseline results/ --format markdown
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from evalkit import record
from evalkit.errors import UserError
from evalkit.record import RunRecord

#: timm's results-imagenet.csv
HEADER = ["model", "img_size", "top1", "top1_err", "top5", "top5_err", "param_count", "crop_pct", "interpolation"]
#: timm's tables of other test sets (results-imagenet-real.csv, ...): the same against a baseline table
DIFF_HEADER = [*HEADER, "top1_diff", "top5_diff", "rank_diff"]


@dataclass(frozen=True)
class Row:
    model: str
    top1: float
    top5: float
    img_size: Optional[int]
    param_count: Optional[float]
    crop_pct: Optional[float]
    interpolation: Optional[str]

    @classmethod
    def of(cls, run: RunRecord) -> "Row":
        """A run's row: accuracy from its metrics; image size, crop and interpolation from its recipe's parameters
        (``size``, or ``crop`` in the families that name it so; ``crop_pct`` only the timm family records)."""
        if "top1" not in run.metrics:
            raise UserError(f"run {run.id}: no top-1 in its metrics (its metrics list lacks topk)")
        params = run.recipe.get("params", {})
        return cls(run.model_name, run.metrics["top1"], run.metrics["top5"], params.get("size", params.get("crop")),
                   run.model.get("params_m"), params.get("crop_pct"), params.get("interpolation"))

    @property
    def key(self) -> tuple[float, float, str]:
        """timm's order, on the values as written (3 decimals)."""
        return -round(self.top1, 3), -round(self.top5, 3), self.model


def find(paths: Sequence[Path]) -> list[RunRecord]:
    """The runs of each path: a run directory, or a folder of run directories (e.g. ``results``)."""
    runs = []
    for path in paths:
        if (path / "run.json").is_file():
            runs.append(record.load(path))
            continue
        found = sorted(p.parent for p in path.glob("*/run.json") if not p.parent.name.startswith("."))
        if not found:
            raise UserError(f"{path}: not a run directory (no run.json) nor a folder of runs")
        runs.extend(record.load(d) for d in found)
    return runs


def ranked(runs: Sequence[RunRecord]) -> list[Row]:
    """One row per model, from its latest run (shard runs left out: their merged run is the model's), timm-sorted."""
    latest: dict[str, RunRecord] = {}
    for run in runs:
        if run.shard is None and (run.model_name not in latest or run.created > latest[run.model_name].created):
            latest[run.model_name] = run
    if not latest:
        raise UserError("no runs found (shard runs count only once merged: python -m evalkit.merge)")
    return sorted((Row.of(run) for run in latest.values()), key=lambda row: row.key)


def table(rows: Sequence[Row], baseline: Sequence[Row] | None = None) -> list[list[str]]:
    """The header and the rows' cells as timm writes them; with a baseline, the diffs to the same model's row
    there (empty where it has none): top-1/top-5 differences of the written values, and
    ``rank_diff = baseline rank - rank`` (+N: N places higher here), as timm's generate_csv_results.py."""
    lines = [DIFF_HEADER if baseline is not None else HEADER]
    base = {row.model: (rank, row) for rank, row in enumerate(baseline or [])}
    for rank, row in enumerate(rows):
        cells = [row.model, "" if row.img_size is None else str(row.img_size), f"{row.top1:.3f}",
                 f"{100 - row.top1:.3f}", f"{row.top5:.3f}", f"{100 - row.top5:.3f}",
                 "" if row.param_count is None else f"{row.param_count:,.2f}",
                 "" if row.crop_pct is None else f"{row.crop_pct:.3f}", row.interpolation or ""]
        if baseline is not None:
            cells += ["", "", ""]
            if row.model in base:
                base_rank, other = base[row.model]
                moved = base_rank - rank
                cells[-3:] = [f"{round(row.top1, 3) - round(other.top1, 3):+.3f}",
                              f"{round(row.top5, 3) - round(other.top5, 3):+.3f}", f"{moved:+d}" if moved else "0"]
        lines.append(cells)
    return lines


def to_csv(lines: list[list[str]]) -> str:
    """CSV as pandas writes timm's tables: a field with a comma (``"1,013.01"``) quoted."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(lines)
    return out.getvalue()


def to_markdown(lines: list[list[str]]) -> str:
    header, *rows = lines
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(cells) + " |" for cells in rows)]) + "\n"


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import examples, exit_on_user_error

    parser = argparse.ArgumentParser(
        prog="python -m evalkit.results",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=examples(__doc__),
        description="timm's results tables (results-imagenet.csv and its kind) from evalkit runs: one row per model, "
                    "from the latest run of that model among those given (by its created time; shard runs are left "
                    "out), sorted by top-1, top-5, then name.")
    parser.add_argument("runs", nargs="*", type=Path, help="run directories, or folders of them")
    parser.add_argument("--results", type=Path, help="a folder of runs (default, when no run is named: results)")
    parser.add_argument("--format", choices=["csv", "markdown"], default="csv", help="default: csv")
    parser.add_argument("--baseline", type=Path, action="append",
                        help="a run directory or a folder of runs (repeatable) to diff against, as timm's "
                             "non-val tables: adds top1_diff, top5_diff, rank_diff (baseline rank - rank)")
    args = parser.parse_args(argv)

    def run() -> None:
        paths = [*args.runs, *([args.results] if args.results else [])] or [Path("results")]
        rows = ranked(find(paths))
        baseline = ranked(find(args.baseline)) if args.baseline else None
        lines = table(rows, baseline)
        sys.stdout.write(to_markdown(lines) if args.format == "markdown" else to_csv(lines))

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
