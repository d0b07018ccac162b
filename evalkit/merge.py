"""Merge the shard runs of one evaluation into one run (``dataset.num_shards=N dataset.shard=i``).

    python -m evalkit.merge results/<shard 0> results/<shard 1> ... [--results results]
    python -m evalkit.merge --last-sweep [--results results]   # the shard runs of the latest sweep

The merged run's metrics and per-image predictions equal those of the unsharded run: the
scorer is re-run on the shards' top-5 predictions, and the merged sample list must be
exactly the one the shards were cut from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit import history, record, reference
from evalkit.contract import K, DatasetOptions, Sample, samples_fingerprint
from evalkit.errors import UserError
from evalkit.record import RunRecord
from evalkit.scoring import Scorer, annotate


def _same(runs: list[RunRecord], what: str, get) -> None:
    values = {json.dumps(get(r), sort_keys=True) for r in runs}
    if len(values) > 1:
        raise UserError(f"the shard runs differ in {what}: {sorted(values)}; merge only shards of one evaluation")


def merge(run_dirs: list[Path], results: Path, db: Path | None) -> Path:
    runs = [record.load(d) for d in run_dirs]
    if any(r.shard is None for r in runs):
        raise UserError("only shard runs (dataset.num_shards > 1) can be merged")
    _same(runs, "model", lambda r: r.model_name)
    _same(runs, "runtime", lambda r: {k: v for k, v in r.runtime.items() if k not in ("info", "batch_size")})
    _same(runs, "recipe", lambda r: r.recipe["fingerprint"])
    _same(runs, "the sample list they were cut from", lambda r: r.dataset["full_list_fingerprint"])
    num_shards = runs[0].shard[1]
    order = sorted(range(len(runs)), key=lambda i: runs[i].shard[0])
    if [runs[i].shard[0] for i in order] != list(range(num_shards)):
        found = sorted(r.shard[0] for r in runs)
        raise UserError(f"need shards 0..{num_shards - 1} once each, got {found}")
    runs, run_dirs = [runs[i] for i in order], [run_dirs[i] for i in order]
    predictions = pd.concat([pd.read_csv(d / "predictions.csv") for d in run_dirs], ignore_index=True)
    samples = [Sample(i, Path(), int(label)) for i, label in zip(predictions["id"], predictions["label"])]
    if samples_fingerprint(samples) != runs[0].dataset["full_list_fingerprint"]:
        raise UserError("the shards' images together are not the sample list they were cut from")
    scorer = Scorer(runs[0].metric_names, dataset=DatasetOptions(real_labels=runs[0].dataset_setting("real_labels")))
    scorer.update_topk(list(predictions["id"]), predictions["label"].to_numpy(),
                       predictions[[f"pred{k}" for k in range(1, K + 1)]].to_numpy())
    result = scorer.result()
    if "path" in predictions:
        result.predictions.insert(2, "path", predictions["path"])
    result.metrics["background_class"] = runs[0].metrics["background_class"]
    logits = (np.concatenate([np.load(d / "logits.npy") for d in run_dirs])
              if all((d / "logits.npy").is_file() for d in run_dirs) else None)
    result.predictions = annotate(result.predictions, logits, runs[0].dataset.get("label_space"))
    first = runs[0]
    run_id = record.new_run_id(first.model_name, first.runtime_name, first.precision)
    seconds = [r.timing["seconds"] for r in runs]
    dataset = {k: v for k, v in first.dataset.items() if k not in ("shard", "full_n", "full_list_fingerprint")}
    merged = dataclasses.replace(
        first, id=run_id, created=datetime.now(timezone.utc).isoformat(), metrics=result.metrics,
        dataset={**dataset, "n": len(samples), "list_fingerprint": samples_fingerprint(samples),
                 "content_fingerprint": None, "shard_content_fingerprints": [r.dataset["content_fingerprint"] for r in runs]},
        timing={"seconds": sum(seconds), "wall_seconds_of_slowest_shard": max(seconds)},
        # the shards' reference rows hold a shard's top-1 and its verdict: measured again on the whole
        reference={"comparable": reference.comparable(result.metrics["n"]), "rows": reference.records(pd.DataFrame(
            [reference.measured(row, result.metrics) for row in first.reference_rows], columns=reference.COLUMNS))},
        bad_images=record.bad_images(sum(r.bad_images["count"] for r in runs),
                                     {k: v for r in runs for k, v in r.bad_images["examples"].items()}),
        merged_from=[r.id for r in runs],
        warnings=[w for r in runs for w in r.warnings],
    )
    out = record.write(results, run_id, merged, result, logits)
    if db is not None:
        history.add(db, out)
    return out


def last_sweep_shards(results: Path) -> list[Path]:
    """The shard runs of the latest sweep (``python -m evalkit -m dataset.num_shards=N 'dataset.shard=range(N)'``),
    the latest run of each shard; a shard the sweep planned but has no run of is named."""
    runs = history.runs(results / "history.sqlite")
    sweep = history.last_sweep(runs, results)
    if sweep is None:
        raise UserError(f"no sweep in {results}; run the shards as one: python -m evalkit -m dataset.num_shards=N "
                        "'dataset.shard=range(N)' ...")
    plan = history.load_sweep(results / ".sweeps" / sweep)
    missing = plan.missing() if plan else []
    if missing:
        raise UserError(f"sweep {sweep} has no run of {'; '.join(missing)}: run its command again with resume=true, "
                        "then merge")
    shards = runs[(runs["sweep"] == sweep) & runs["shard"].notna()].drop_duplicates("shard", keep="last")
    if shards.empty:
        raise UserError(f"the latest sweep in {results}, {sweep}, has no shard runs (dataset.num_shards > 1)")
    return [Path(p) for p in shards["path"]]


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import examples, exit_on_user_error

    parser = argparse.ArgumentParser(prog="python -m evalkit.merge", description="Merge shard runs into one run.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=examples(__doc__))
    parser.add_argument("runs", nargs="*", help="the shard run directories")
    parser.add_argument("--last-sweep", action="store_true",
                        help="merge the shard runs of the sweep that ran or was submitted last in --results")
    parser.add_argument("--results", help="where the merged run goes (default: the shards' results directory; "
                                          "with --last-sweep: results), and where --last-sweep looks")
    parser.add_argument("--no-history", action="store_true", help="do not add the merged run to the history index")
    args = parser.parse_args(argv)

    def run() -> None:
        if bool(args.runs) == args.last_sweep:
            raise UserError("name the shard runs: their directories, or --last-sweep")
        dirs = last_sweep_shards(Path(args.results or "results")) if args.last_sweep else [Path(d) for d in args.runs]
        for d in dirs:
            if not (d / "run.json").is_file():
                raise UserError(f"{d}: not a run directory (no run.json)")
        results = Path(args.results) if args.results else dirs[0].parent
        out = merge(dirs, results, None if args.no_history else results / "history.sqlite")
        metrics = record.load(out).metrics
        print(f"merged {len(dirs)} shards: top-1 {metrics['top1']:.3f} top-5 {metrics['top5']:.3f} (n={metrics['n']})")
        print(f"run written to {out}")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
