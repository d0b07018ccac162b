"""The regression gate: exit 0 when every run passes, 1 when any fails (or a sweep point has no run), 2 on bad
input, 3 when nothing failed but some run is unverified: no check applied to it (``--allow-unverified``: 0).

Each run is checked against (a) its published top-1, one-sided, for every reference that
applies to its recipe, by ``reference.judge`` (a run on fewer images than the reference
fails only when its 95 % CI of top-1 lies below it, otherwise it is "not comparable",
which is no failure); (b) its baseline, the last run of the same model, runtime, precision
and sample list that no gate failed (or that ``--accept`` named), whatever its recipe: a
top-1 drop beyond tolerance, or more per-image top-1 changes than allowed, fails, and a
changed recipe is named; (c) for fp16/bf16/int8, the fp32 run of the same model, runtime,
recipe and samples (``precision_drop``). Tolerances come from the gate config. Writes a
JUnit XML and a Markdown summary, and records each verdict. A sweep's recorded points
without a run fail too, each named with the error that stopped it.

    python -m evalkit.gate --last-sweep --junit gate.xml --markdown gate.md
    python -m evalkit.gate results/<run> results/<run> --config my-gate.yaml
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from omegaconf import OmegaConf

from evalkit import compare, history, record, reference
from evalkit.errors import UserError
from evalkit.record import RunRecord


@dataclass
class Rule:
    """Overrides for the runs whose model/runtime/precision match these patterns (fnmatch)."""

    model: str = "*"
    runtime: str = "*"
    precision: str = "*"
    tolerance: Optional[float] = None
    drop: Optional[float] = None
    max_flips: Optional[int] = None


@dataclass
class GateConfig:
    #: points a run's top-1 may sit below a published reference
    tolerance: float = reference.TOLERANCE
    #: points a run's top-1 may sit below the last passing run
    drop: float = 0.1
    #: images whose top-1 prediction may differ from the last passing run
    max_flips: int = 25
    #: points a reduced-precision run's top-1 may sit below the fp32 run of the same model, runtime, recipe and
    #: samples (from the same sweep, or the latest one)
    precision_drop: dict[str, float] = field(default_factory=lambda: {"fp16": 0.3, "bf16": 0.3, "int8": 1.0})
    #: later rules win over earlier ones
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Check:
    name: str
    passed: bool | None  # None = no verdict (recorded, never a failure)
    detail: str
    #: the summary's result when passed is None: why there is no verdict
    no_verdict: str = "n/a"

    def __post_init__(self) -> None:
        self.passed = None if self.passed is None else bool(self.passed)  # numpy comparisons give numpy bools


def load_config(path: Path | None) -> GateConfig:
    text = (path.read_text() if path else
            resources.files("evalkit.conf").joinpath("gate/default.yaml").read_text())
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(GateConfig), OmegaConf.create(text)))
    except Exception as e:  # OmegaConf's validation errors name the key
        raise UserError(f"gate config {path or 'default'}: {e}") from e


def limits(cfg: GateConfig, model: str, runtime: str, precision: str) -> dict[str, float]:
    found = {"tolerance": cfg.tolerance, "drop": cfg.drop, "max_flips": cfg.max_flips}
    for rule in cfg.rules:
        if all(fnmatch.fnmatch(v, p) for v, p in ((model, rule.model), (runtime, rule.runtime), (precision, rule.precision))):
            found.update({k: getattr(rule, k) for k in found if getattr(rule, k) is not None})
    return found


def _same(runs: pd.DataFrame, run: RunRecord, *keys: str) -> pd.DataFrame:
    """The other runs that share ``keys`` (history columns) with ``run``."""
    r = history.row(run, Path("."))
    chosen = runs["id"] != r["id"]
    for key in keys:
        chosen &= runs[key] == r[key]
    return runs[chosen]


def baseline(runs: pd.DataFrame, run: RunRecord) -> pd.Series | None:
    """The latest earlier run of the same model, runtime, precision and sample list that no gate failed (it passed,
    was unverified, or a person accepted it with ``--accept``), whatever its recipe: a recipe change is what a
    regression check must catch, not a reason to have nothing to compare with."""
    same = _same(runs, run, "model", "runtime", "precision", "list_fingerprint")
    same = same[(same["created"] < run.created) & (same["passed"] == 1)]
    return None if same.empty else same.iloc[-1]


def fp32_counterpart(runs: pd.DataFrame, run: RunRecord) -> pd.Series | None:
    """For a reduced-precision run, the fp32 run of the same model, runtime, recipe and samples: from its own sweep,
    else the latest."""
    if run.precision == record.DEFAULT_PRECISION:
        return None
    same = _same(runs, run, "model", "runtime", "recipe_fingerprint", "list_fingerprint")
    same = same[same["precision"] == record.DEFAULT_PRECISION]
    in_sweep = same[same["sweep"] == run.sweep] if run.sweep else same.iloc[:0]
    chosen = in_sweep if not in_sweep.empty else same
    return None if chosen.empty else chosen.iloc[-1]


def recipe_change(before: RunRecord, after: RunRecord) -> str:
    """``recipe changed: crop_pct 0.875 -> 1.0, interpolation bicubic -> bilinear`` (empty when the same)."""
    a, b = before.recipe.get("params", {}), after.recipe.get("params", {})
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return ("recipe changed: " + ", ".join(f"{k} {a.get(k)} -> {b.get(k)}" for k in changed)) if changed else ""


def paired(run_dir: Path, other: Path) -> tuple[int, float, float]:
    """(images whose top-1 differs, top-1 agreement in percent, McNemar's exact p) of two runs, image by image."""
    ours = pd.read_csv(run_dir / "predictions.csv").set_index("id")["pred1"]
    theirs = pd.read_csv(other / "predictions.csv").set_index("id")["pred1"].reindex(ours.index)
    flips = int((ours != theirs).sum())
    return flips, 100.0 * (1 - flips / max(len(ours), 1)), compare.mcnemar(run_dir, other)["p_value"]


#: a run's outcome: a check failed; none failed and one passed at least; no check applied
FAIL, PASS, UNVERIFIED = "fail", "pass", "unverified"


def outcome(checks: Sequence[Check]) -> str:
    """``fail`` when any check failed, ``pass`` when at least one passed, else ``unverified``: a run with nothing
    to be checked against is never green."""
    if any(c.passed is False for c in checks):
        return FAIL
    return PASS if any(c.passed for c in checks) else UNVERIFIED


def check(run_dir: Path, runs: pd.DataFrame, cfg: GateConfig) -> tuple[RunRecord, list[Check]]:
    run = record.load(run_dir)
    top1 = run.metrics["top1"]
    lim = limits(cfg, run.model_name, run.runtime_name, run.precision)
    checks = []
    applicable = run.applicable_references
    for ref in applicable:
        ref_n = ref["ref_n"]
        verdict = reference.judge(run.metrics, ref["ref_top1"], ref_n, lim["tolerance"])
        checks.append(Check(f"reference {ref['source']}", verdict.passed,
                            f"{verdict.status}: top-1 {top1:.3f} on {run.metrics['n']} images vs published "
                            f"{ref['ref_top1']:.3f} on {ref_n} (tolerance {lim['tolerance']:g})",
                            no_verdict="not comparable"))
    if not applicable:
        checks.append(Check("reference", None, "no published number applies to this recipe"))
    base = baseline(runs, run)
    if base is None:
        checks.append(Check("history", None, "no earlier run of this model/runtime/precision/sample list that no "
                                              "gate failed"))
    else:
        changed = recipe_change(record.load(base["path"]), run)
        since = f"run {base['id']}" + (f" ({changed})" if changed else "")
        drop = base["top1"] - top1
        flips, _, p = paired(run_dir, Path(base["path"]))
        checks.append(Check("history top-1", drop <= lim["drop"] + 1e-9,
                            f"top-1 {top1:.3f} vs {base['top1']:.3f} in {since} (drop allowed {lim['drop']:g}; "
                            f"McNemar p={p:.3g})"))
        checks.append(Check("history flips", flips <= lim["max_flips"],
                            f"{flips} images changed top-1 since {since} (allowed {lim['max_flips']})"))
    fp32 = fp32_counterpart(runs, run)
    allowed = cfg.precision_drop.get(run.precision)
    if fp32 is not None and allowed is not None:
        delta = top1 - fp32["top1"]
        _, agree, p = paired(run_dir, Path(fp32["path"]))
        checks.append(Check(f"{run.precision} vs fp32", -delta <= allowed + 1e-9,
                            f"{run.precision} top-1 {top1:.3f} vs fp32 {fp32['top1']:.3f} (run {fp32['id']}): "
                            f"{delta:+.3f} points (allowed -{allowed:g}), top-1 agreement {agree:.1f} %, "
                            f"McNemar p={p:.3g}"))
    return run, checks


def junit(results: list[tuple[RunRecord, list[Check]]], path: Path, missing: Sequence[str] = ()) -> None:
    cases = [(run, c) for run, checks in results for c in checks]
    suite = ET.Element("testsuite", name="evalkit.gate", tests=str(len(cases) + len(missing)),
                       failures=str(sum(c.passed is False for _, c in cases) + len(missing)),
                       skipped=str(sum(c.passed is None for _, c in cases)))
    for run, c in cases:
        case = ET.SubElement(suite, "testcase", name=c.name, classname=(
            f"{run.model_name}.{run.runtime_name}.{run.precision}"))
        if c.passed is False:
            ET.SubElement(case, "failure", message=c.detail).text = f"run {run.id}: {c.detail}"
        elif c.passed is None:
            ET.SubElement(case, "skipped", message=c.detail)
    for point in missing:
        case = ET.SubElement(suite, "testcase", name="sweep point", classname="sweep")
        ET.SubElement(case, "failure", message=f"{point}: no run")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def counts(results: list[tuple[RunRecord, list[Check]]], missing: Sequence[str] = ()) -> str:
    """``2 pass, 1 fail, 3 unverified (of 6 runs); 1 sweep point without a run``."""
    found = [outcome(checks) for _, checks in results]
    said = f"{found.count(PASS)} pass, {found.count(FAIL)} fail, {found.count(UNVERIFIED)} unverified (of {len(found)} runs)"
    return said + (f"; {len(missing)} sweep point(s) without a run" if missing else "")


def markdown(results: list[tuple[RunRecord, list[Check]]], missing: Sequence[str] = ()) -> str:
    lines = [f"**gate: {counts(results, missing)}**", "",
             "| model | runtime | precision | top-1 | outcome | check | result | detail |",
             "|---|---|---|---|---|---|---|---|"]
    for run, checks in results:
        for c in checks:
            result = {True: "pass", False: "**FAIL**", None: c.no_verdict}[c.passed]
            lines.append(f"| {run.model_name} | {run.runtime_name} | {run.precision} "
                         f"| {run.metrics['top1']:.3f} | {outcome(checks)} | {c.name} | {result} | {c.detail} |")
    lines += [f"| | | | | fail | sweep point | **FAIL** | {point}: no run |" for point in missing]
    return "\n".join(lines) + "\n"


def gate(run_dirs: list[Path], db: Path, cfg: GateConfig) -> list[tuple[RunRecord, list[Check]]]:
    runs = history.runs(db)
    results = []
    checked = datetime.now(timezone.utc).isoformat()
    for run_dir in run_dirs:
        run, checks = check(run_dir, runs, cfg)
        history.add_verdict(db, run_dir, {"run_id": run.id, "checked": checked, "passed": outcome(checks) != FAIL,
                                          "outcome": outcome(checks), "checks": [c.__dict__ for c in checks]})
        results.append((run, checks))
    return results


def accept(run_dir: Path, db: Path) -> RunRecord:
    """A person's word that this run is the one to compare later runs with: a verdict that counts as passed."""
    run = record.load(run_dir)
    history.add(db, run_dir)
    history.add_verdict(db, run_dir, {"run_id": run.id, "checked": datetime.now(timezone.utc).isoformat(),
                                      "passed": True, "outcome": "accepted", "checks": []})
    return run


def _select(args: argparse.Namespace, results: Path) -> tuple[list[Path], list[str]]:
    """The run directories to gate, and the points of their sweep that have no run."""
    if args.runs:
        dirs = [Path(d) for d in args.runs]
        for d in dirs:
            if not (d / "run.json").is_file():
                raise UserError(f"{d}: not a run directory (no run.json)")
        return dirs, []
    db = results / "history.sqlite"
    runs = history.runs(db)
    sweep = args.sweep
    if args.last_sweep:
        sweep = history.last_sweep(runs, results)
        if sweep is None:
            raise UserError(f"no sweep in {results}; run one with python -m evalkit -m ...")
    if sweep is None:
        raise UserError("name the runs: run directories, --sweep ID or --last-sweep")
    plan = history.load_sweep(results / ".sweeps" / sweep)
    missing = plan.missing() if plan else []
    ours = runs[runs["sweep"] == sweep]
    chosen = ours[ours["shard"].isna()]
    if chosen.empty and not missing:
        shards = (f"; its runs are shards: merge them first, python -m evalkit.merge --last-sweep --results {results}"
                  if not ours.empty else "")
        raise UserError(f"no runs of sweep {sweep!r} in {db}{shards}")
    return [Path(p) for p in chosen["path"]], missing


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import examples, exit_on_user_error

    parser = argparse.ArgumentParser(prog="python -m evalkit.gate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=examples(__doc__))
    parser.add_argument("runs", nargs="*", help="run directories (default: pick with --sweep / --last-sweep)")
    parser.add_argument("--results", default="results",
                        help="the results directory holding history.sqlite and the sweeps (.sweeps/)")
    parser.add_argument("--sweep", help="gate the runs of this sweep")
    parser.add_argument("--last-sweep", action="store_true",
                        help="gate the runs of the sweep that ran or was submitted last")
    parser.add_argument("--config", help="gate tolerances (YAML); default conf/gate/default.yaml")
    parser.add_argument("--junit", help="write a JUnit XML report here")
    parser.add_argument("--markdown", help="write a Markdown summary here")
    parser.add_argument("--accept", metavar="RUN",
                        help="accept this run directory as the baseline of its model/runtime/precision/sample list "
                             "(e.g. after an intended recipe change), and exit")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="exit 0, not 3, when nothing failed but some run had nothing to be checked against")
    args = parser.parse_args(argv)

    def run() -> int:
        db = Path(args.results) / "history.sqlite"
        if args.config and not Path(args.config).is_file():
            raise UserError(f"--config {args.config}: no such file")
        cfg = load_config(Path(args.config) if args.config else None)
        if args.accept:
            accepted = accept(Path(args.accept), db)
            print(f"gate: run {accepted.id} accepted as the baseline of {accepted.model_name} / "
                  f"{accepted.runtime_name} / {accepted.precision} on its sample list")
            return 0
        run_dirs, missing = _select(args, Path(args.results))
        results = gate(run_dirs, db, cfg)
        summary = markdown(results, missing)
        print(summary)
        if args.junit:
            junit(results, Path(args.junit), missing)
        if args.markdown:
            Path(args.markdown).write_text(summary)
        failed = [run.id for run, checks in results if outcome(checks) == FAIL]
        unverified = [run.id for run, checks in results if outcome(checks) == UNVERIFIED]
        print(f"gate: {counts(results, missing)}" + (f"; failed: {', '.join(failed)}" if failed else ""))
        if missing:
            print(f"gate: no run of {'; '.join(missing)}. Run the sweep's command again with resume=true to run "
                  "only what is missing")
        if failed or missing:
            return 1
        if unverified and not args.allow_unverified:
            print(f"gate: nothing failed, but nothing could be checked for {', '.join(unverified)} (no published "
                  "number applies and no earlier run to compare with): exit 3; --allow-unverified accepts that")
            return 3
        return 0

    sys.exit(exit_on_user_error(run))


if __name__ == "__main__":
    main()
