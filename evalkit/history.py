"""The history index: one SQLite row per run, derived from the run directories (rebuildable).

Every run adds itself when its directory has landed; the gate adds its verdicts (also kept
as ``gate-*.json`` files in the run directories, so a rebuild restores them). SQLite's
locking makes concurrent writers of a sweep safe.

A sweep launched on SLURM (``evalkit.slurm``) also records its points in
``<results>/.sweeps/<sweep id>/points.json``, and each point's job, once its run directory
has landed, ``done/<point>.json``: what the gate needs to name a point without a run, and
``resume=true`` to run only those.

    python -m evalkit.history rebuild [--results results]
    python -m evalkit.history list [--results results] [--model M --runtime R --precision P --samples FP --since DATE]
    python -m evalkit.history plot --out trend.png [--results results] [the same filters]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit import record
from evalkit.errors import UserError
from evalkit.record import RunRecord

COLUMNS = ["id", "path", "created", "model", "source", "runtime", "precision", "recipe_fingerprint", "dataset",
           "list_fingerprint", "n", "top1", "top2", "top3", "top4", "top5", "sweep", "shard"]
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs ({", ".join(c + (" TEXT PRIMARY KEY" if c == "id" else "") for c in COLUMNS)});
CREATE TABLE IF NOT EXISTS verdicts (run_id TEXT, checked TEXT, passed INTEGER, report TEXT,
                                     PRIMARY KEY (run_id, checked));
"""


def connect(db: Path) -> sqlite3.Connection:
    db.parent.mkdir(parents=True, exist_ok=True)
    # SQLite's default rollback journal with a busy timeout serialises writers; WAL's mode switch would
    # return "database is locked" to a second process creating the file at the same moment.
    conn = sqlite3.connect(db, timeout=120)
    conn.executescript(SCHEMA)
    return conn


def row(run: RunRecord, path: Path) -> dict[str, Any]:
    """The index row of a run."""
    m, ds = run.metrics, run.dataset
    return {"id": run.id, "path": str(path.resolve()), "created": run.created, "model": run.model_name,
            "source": run.model.get("source"), "runtime": run.runtime_name,
            "precision": run.precision, "recipe_fingerprint": run.recipe["fingerprint"],
            "dataset": ds["name"], "list_fingerprint": ds["list_fingerprint"], "n": m["n"],
            **{f"top{k}": m[f"top{k}"] for k in range(1, 6)}, "sweep": run.sweep,
            "shard": None if run.shard is None else "{}/{}".format(*run.shard)}


def add(db: Path, run_dir: Path) -> None:
    run = record.load(run_dir)
    with closing(connect(db)) as conn, conn:
        r = row(run, run_dir)
        conn.execute(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * len(COLUMNS))})", [r[c] for c in COLUMNS])
        for verdict in sorted(run_dir.glob("gate-*.json")):
            v = json.loads(verdict.read_text())
            conn.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
                         (run.id, v["checked"], int(v["passed"]), json.dumps(v)))


def add_safely(db: Path, run_dir: Path) -> None:
    """``add``, where a damaged index is no reason to lose a run that has landed: it is rebuilt from the run
    directories beside it, with a warning."""
    try:
        add(db, run_dir)
    except sqlite3.DatabaseError as e:
        print(f"WARNING: the history index {db} is damaged ({e}); rebuilding it from the run folders "
              f"(python -m evalkit.history rebuild)", file=sys.stderr)
        rebuild(run_dir.parent, db)


def add_verdict(db: Path, run_dir: Path, verdict: dict[str, Any]) -> None:
    """Keep the gate's verdict with the run (a file) and in the index."""
    (run_dir / f"gate-{verdict['checked'].replace(':', '')}.json").write_text(json.dumps(verdict, indent=2))
    with closing(connect(db)) as conn, conn:
        conn.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
                     (verdict["run_id"], verdict["checked"], int(verdict["passed"]), json.dumps(verdict)))


def rebuild(results: Path, db: Path) -> int:
    """Recreate the index from the run directories under ``results``; returns the number of runs."""
    if db.exists():
        db.unlink()
    runs = sorted(p.parent for p in results.glob("*/run.json") if not p.parent.name.startswith("."))
    for run_dir in runs:
        add(db, run_dir)
    return len(runs)


def runs(db: Path) -> pd.DataFrame:
    """All runs, oldest first, with ``passed`` = the latest gate verdict (NaN where never gated)."""
    if not db.is_file():
        return pd.DataFrame(columns=[*COLUMNS, "passed", "verdict"])
    with closing(connect(db)) as conn:
        frame = pd.read_sql_query(
            """SELECT r.*, (SELECT passed FROM verdicts v WHERE v.run_id = r.id ORDER BY checked DESC LIMIT 1) AS passed,
                      (SELECT report FROM verdicts v WHERE v.run_id = r.id ORDER BY checked DESC LIMIT 1) AS report
               FROM runs r ORDER BY created""", conn)
    frame["verdict"] = [verdict_word(passed, report) for passed, report in zip(frame["passed"], frame["report"])]
    return frame.drop(columns="report")


def verdict_word(passed: Any, report: str | None) -> str:
    """The latest gate verdict in words: pass, fail, unverified, accepted, or "not gated"."""
    if not isinstance(report, str):  # no verdict: SQL NULL, NaN in pandas
        return "not gated"
    found = json.loads(report).get("outcome")
    return found or ("pass" if passed == 1 else "fail")


def verdicts(db: Path) -> pd.DataFrame:
    """Every gate verdict (run_id, checked, passed, and the verdict as the gate wrote it, in ``report``), oldest
    first; one gate command gives all its verdicts the same ``checked``."""
    if not db.is_file():
        return pd.DataFrame(columns=["run_id", "checked", "passed", "report"])
    with closing(connect(db)) as conn:
        frame = pd.read_sql_query("SELECT * FROM verdicts ORDER BY checked", conn)
    frame["report"] = frame["report"].map(json.loads)
    return frame


@dataclass
class Sweep:
    """A sweep's plan: its points (number -> overrides) and the SLURM job that ran each one last."""

    dir: Path
    submitted: str
    points: dict[int, list[str]]
    jobs: dict[int, str]

    @property
    def id(self) -> str:
        return self.dir.name

    def completed(self) -> dict[int, Path]:
        """Point -> run directory, for the points whose run has landed (and is still there)."""
        found = {}
        for marker in (self.dir / "done").glob("*.json"):
            run_dir = Path(json.loads(marker.read_text())["run"])
            if (run_dir / "run.json").is_file():
                found[int(marker.stem)] = run_dir
        return found

    def failed(self) -> dict[int, str]:
        """Point -> the first line of the error that stopped it, for the points that recorded one."""
        return {int(marker.stem): json.loads(marker.read_text())["error"]
                for marker in (self.dir / "failed").glob("*.json")}

    def missing(self) -> list[str]:
        """The points without a run, each named by its overrides, its SLURM job, and the error that stopped it."""
        done, failed = self.completed(), self.failed()
        named = []
        for n in sorted(self.points):
            if n in done:
                continue
            job = f"; SLURM job {self.jobs[n]}" if n in self.jobs else ""
            named.append(f"point {n} ({point_label(self.points, n)}{job})"
                         + (f": {failed[n]}" if n in failed else ""))
        return named


def point_label(points: dict[int, list[str]], point: int) -> str:
    """The overrides that set this point apart from the sweep's others (all of them in a sweep of one point)."""
    own = points[point]
    varying = [o for o in own if any(o not in other for other in points.values())]
    return " ".join(varying or own)


def _write_json(path: Path, data: object) -> None:
    """Whole or not at all (temp file, then rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def plan_sweep(sweep_dir: Path, points: dict[int, list[str]], jobs: dict[int, str]) -> None:
    """Record the sweep's points and the jobs just submitted for some of them (a resumed sweep keeps the rest)."""
    old = load_sweep(sweep_dir)
    points, jobs = {**(old.points if old else {}), **points}, {**(old.jobs if old else {}), **jobs}
    _write_json(sweep_dir / "points.json", {"submitted": datetime.now(timezone.utc).isoformat(), "points": [
        {"point": n, "overrides": points[n], "job": jobs.get(n)} for n in sorted(points)]})


def point_done(sweep_dir: Path, point: int, run_dir: Path) -> None:
    """Called by a point's job once its run directory has landed."""
    _write_json(sweep_dir / "done" / f"{point}.json", {"run": str(run_dir.resolve())})
    (sweep_dir / "failed" / f"{point}.json").unlink(missing_ok=True)


def point_failed(sweep_dir: Path, point: int, error: str) -> None:
    """Called when a point stops without a run (refused by the preflight, bad input, a crash): what the gate says."""
    _write_json(sweep_dir / "failed" / f"{point}.json", {"error": (error.strip().splitlines() or ["failed"])[0]})


def load_sweep(sweep_dir: Path) -> Sweep | None:
    """The sweep's plan, or None for a sweep that recorded none (launched before sweeps recorded their points)."""
    path = sweep_dir / "points.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Sweep(sweep_dir, data["submitted"], {p["point"]: p["overrides"] for p in data["points"]},
                 {p["point"]: p["job"] for p in data["points"] if p["job"]})


def planned_sweeps(folder: Path) -> list[Sweep]:
    """The sweeps in ``folder`` (``<results>/.sweeps``) that recorded their points, oldest submission first."""
    found = [load_sweep(p.parent) for p in folder.glob("*/points.json")]
    return sorted(found, key=lambda s: s.submitted)


def last_sweep(frame: pd.DataFrame, results: Path) -> str | None:
    """The sweep most recently active: its latest run, or its latest submission (a sweep whose every point
    failed has no run, and must not leave the one before it looking like the last)."""
    times = frame.dropna(subset=["sweep"]).groupby("sweep")["created"].max().to_dict()
    for sweep in planned_sweeps(results / ".sweeps"):
        times[sweep.id] = max(times.get(sweep.id, ""), sweep.submitted)
    return max(times, key=times.get) if times else None


def select(frame: pd.DataFrame, model: str | None = None, runtime: str | None = None, precision: str | None = None,
           samples: str | None = None, since: str | None = None) -> pd.DataFrame:
    """The runs matching every filter given: exact names, a sample-list fingerprint prefix, created on or after
    ``since`` (an ISO date)."""
    chosen = frame
    for column, value in (("model", model), ("runtime", runtime), ("precision", precision)):
        if value is not None:
            chosen = chosen[chosen[column] == value]
    if samples is not None:
        chosen = chosen[chosen["list_fingerprint"].str.startswith(samples)]
    if since is not None:
        chosen = chosen[pd.to_datetime(chosen["created"], utc=True) >= pd.Timestamp(since, tz="UTC")]
    return chosen


#: what one trend line holds: runs comparable with each other
SERIES = ["model", "runtime", "precision", "list_fingerprint"]


def trend_label(model: str, runtime: str, precision: str, samples: str, n: int) -> str:
    """How a trend is named: what it follows, and on how many images."""
    return f"{model} / {runtime} {precision} / samples {str(samples)[:8]} (n={n})"


def trend_series(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The lines of the trend plot: label -> its runs (created, top1, id), oldest first; shards left out."""
    frame = frame[frame["shard"].isna()]
    return {trend_label(model, runtime, precision, samples, int(group["n"].iloc[-1])):
            group[["created", "top1", "id"]].reset_index(drop=True)
            for (model, runtime, precision, samples), group in frame.groupby(SERIES)}


def plot_trend(frame: pd.DataFrame, out: Path) -> Path:
    """Top-1 over time, one line per model, runtime, precision and sample list (runs on other images are not one
    line), with n in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = trend_series(frame)
    if not series:
        raise UserError("no runs in the history to plot (check the filters)")
    fig, ax = plt.subplots(figsize=(9, 4.5 + 0.2 * len(series)), layout="constrained")
    for label, runs_of in series.items():
        ax.plot(pd.to_datetime(runs_of["created"]), runs_of["top1"], marker="o", label=label)
    ax.set_xlabel("run")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("top-1 per model, runtime, precision and sample list over time", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize=8, frameon=False)
    fig.autofmt_xdate()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import examples, exit_on_user_error

    parser = argparse.ArgumentParser(prog="python -m evalkit.history", description="The index of all runs.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=examples(__doc__))
    parser.add_argument("action", choices=["rebuild", "list", "plot"])
    parser.add_argument("--results", default="results", help="the results directory (default: results)")
    parser.add_argument("--db", help="the index file (default: <results>/history.sqlite)")
    parser.add_argument("--out", default="trend.png", help="plot: the PNG to write")
    for key in ("model", "runtime", "precision"):
        parser.add_argument(f"--{key}", help=f"list/plot: only this {key}")
    parser.add_argument("--samples", help="list/plot: only runs on this sample list (its fingerprint or a prefix)")
    parser.add_argument("--since", help="list/plot: only runs created on or after this date (YYYY-MM-DD)")
    args = parser.parse_args(argv)

    def run() -> None:
        results = Path(args.results)
        if not results.is_dir():
            raise UserError(f"--results {results}: no such folder")
        db = Path(args.db) if args.db else results / "history.sqlite"
        if args.action == "rebuild":
            print(f"{rebuild(results, db)} runs indexed in {db}")
        chosen = select(runs(db), args.model, args.runtime, args.precision, args.samples, args.since)
        if args.action == "list":
            cols = ["created", "model", "runtime", "precision", "recipe_fingerprint", "dataset", "list_fingerprint",
                    "n", "top1", "top5", "verdict", "id"]
            shown = chosen[cols].assign(list_fingerprint=chosen["list_fingerprint"].str.slice(0, 12))
            print(shown.rename(columns={"recipe_fingerprint": "recipe", "list_fingerprint": "samples"}).to_string(
                index=False, float_format=lambda v: f"{v:.3f}"))
        else:
            print(f"wrote {plot_trend(chosen, Path(args.out))}")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
