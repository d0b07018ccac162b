"""The nightly site: static pages a person reads after the nightly, opened from file:// with no network.

    python -m evalkit.report --results results --out site/

    index.html                  the latest gate: each run's outcome (pass, fail, unverified) with its reasons, and
                                the points of the last sweep without a run, each with the error that stopped it
    trends.html                 top-1 over time per model, runtime, precision and sample list, with n (filterable)
    runs/<run id>.html          one page per run: metrics, config, recipe, references, verdicts, per-class table
    compare/<model>-<list>.html the latest runs of one model on one sample list against its fp32 run: what flipped
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

import pandas as pd

from evalkit import compare, gate, history, pages, record
from evalkit.classes import imagenet1k
from evalkit.contract import safe_name
from evalkit.errors import UserError

#: the trend page's filters: data attribute -> history column
FILTERS = {"model": "model", "runtime": "runtime", "precision": "precision", "list": "list_fingerprint"}

FILTER_JS = """
<script>
function applyFilters() {
  const want = {};
  document.querySelectorAll('select[data-key]').forEach(s => { want[s.dataset.key] = s.value; });
  document.querySelectorAll('[data-filtered]').forEach(el => {
    const shown = Object.entries(want).every(([key, value]) => !value || el.dataset[key] === value);
    el.style.display = shown ? '' : 'none';
  });
}
document.querySelectorAll('select[data-key]').forEach(s => s.addEventListener('change', applyFilters));
</script>
"""


def _nav(depth: int) -> str:
    up = "../" * depth
    return f"<nav><a href='{up}index.html'>latest gate</a><a href='{up}trends.html'>trends</a></nav>"


def _run_link(run_id: str, depth: int = 0) -> str:
    return f"<a href='{'../' * depth}runs/{safe_name(run_id)}.html'>{html.escape(run_id)}</a>"


def latest_gate(results: Path) -> tuple[str | None, list[tuple[record.RunRecord, list[gate.Check]]]]:
    """The verdicts of the last gate command (they share their ``checked`` time): when, and per run its checks."""
    db = results / "history.sqlite"
    verdicts = history.verdicts(db)
    if verdicts.empty:
        return None, []
    checked = verdicts["checked"].max()
    paths = history.runs(db).set_index("id")["path"]
    found = []
    for v in verdicts[verdicts["checked"] == checked].itertuples():
        if v.run_id in paths:
            found.append((record.load(paths[v.run_id]), [gate.Check(**c) for c in v.report["checks"]]))
    return checked, found


def _reasons(checks: list[gate.Check]) -> str:
    """Why a run has its outcome: the failed checks, else (unverified) why none applied, else what passed."""
    outcome = gate.outcome(checks)
    if outcome == gate.FAIL:
        shown = [c for c in checks if c.passed is False]
    elif outcome == gate.UNVERIFIED:
        shown = [c for c in checks if c.passed is None]
    else:
        shown = [c for c in checks if c.passed]
    return "<br>".join(f"{html.escape(c.name)}: {html.escape(c.detail)}" for c in shown)


def index_page(results: Path, comparisons: dict[str, str]) -> str:
    """The first page: the latest gate with every failure's reason, and the last sweep's points without a run."""
    frame = history.runs(results / "history.sqlite")
    sweep = history.last_sweep(frame, results)
    plan = history.load_sweep(results / ".sweeps" / sweep) if sweep else None
    missing = plan.missing() if plan else []
    checked, verdicts = latest_gate(results)
    body = []
    if missing:
        body += [f"<h2 class=fail>Sweep {html.escape(sweep)}: {len(missing)} point(s) without a run</h2>",
                 "<ul id=missing-points>" + "".join(f"<li class=fail>{html.escape(m)}</li>" for m in missing) + "</ul>"]
    if checked is None:
        body.append("<p>No gate has run on these results: <code>python -m evalkit.gate --last-sweep</code>.</p>")
    else:
        body.append(f"<h2>Latest gate ({html.escape(checked)}): {html.escape(gate.counts(verdicts, missing))}</h2>")
        rows = "".join(
            f"<tr class='{gate.outcome(checks)}'><td class='{gate.outcome(checks)}'>{gate.outcome(checks)}</td>"
            f"<td>{html.escape(run.model_name)}</td><td>{html.escape(run.runtime_name)}</td>"
            f"<td>{html.escape(run.precision_label)}</td><td>{run.metrics['top1']:.3f}</td><td>{run.metrics['n']}</td>"
            f"<td>{_reasons(checks)}</td><td>{_run_link(run.id)}</td></tr>"
            for run, checks in sorted(verdicts, key=lambda v: [gate.FAIL, gate.UNVERIFIED, gate.PASS].index(
                gate.outcome(v[1]))))
        body.append("<table id=gate><thead><tr><th>outcome</th><th>model</th><th>runtime</th><th>precision</th>"
                    f"<th>top-1</th><th>n</th><th>why</th><th>run</th></tr></thead><tbody>{rows}</tbody></table>")
    if comparisons:
        body += ["<h2>What flipped: the latest runs against their fp32 run</h2>", "<ul>" + "".join(
            f"<li><a href='{html.escape(href)}'>{html.escape(title)}</a></li>" for title, href in comparisons.items())
            + "</ul>"]
    return pages.page("evalkit nightly", "\n".join(body), _nav(0))


def _trend_plot(group: pd.DataFrame) -> str:
    """One trend's top-1 over time, a line per recipe; its name is the card's heading, not a plot title."""
    plt = pages.pyplot()
    fig, ax = plt.subplots(figsize=(5.1, 2.6), layout="constrained")
    for fingerprint, line in group.groupby("recipe_fingerprint"):
        ax.plot(pd.to_datetime(line["created"]), line["top1"], marker="o", label=f"recipe {fingerprint[:8]}")
    ax.set_ylabel("top-1 (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if group["recipe_fingerprint"].nunique() > 1:
        ax.legend(fontsize=6)
    fig.autofmt_xdate()
    return pages.figure(fig)


def _data(row: pd.Series | dict) -> str:
    return " ".join(f"data-{key}='{html.escape(str(row[column]), quote=True)}'" for key, column in FILTERS.items())


def trends_page(frame: pd.DataFrame) -> str:
    """Top-1 over time per model, runtime, precision and sample list, with n; select boxes filter the page."""
    frame = frame[frame["shard"].isna()]
    selects = "".join(
        f"<label>{key} <select data-key='{key}'><option value=''>all</option>" + "".join(
            f"<option>{html.escape(str(v))}</option>" for v in sorted(frame[column].dropna().unique())) +
        "</select></label>" for key, column in FILTERS.items())
    cards = []
    for keys, group in frame.groupby(list(FILTERS.values())):
        title = history.trend_label(*keys, group["n"].iloc[-1])
        cards.append(f"<div class=card data-filtered {_data(dict(zip(FILTERS.values(), keys)))}>"
                     f"<h3>{html.escape(title)}</h3>{_trend_plot(group)}</div>")
    rows = "".join(
        f"<tr data-filtered {_data(r)}><td>{html.escape(str(r['created']))}</td><td>{html.escape(r['model'])}</td>"
        f"<td>{html.escape(r['runtime'])}</td><td>{html.escape(r['precision'])}</td>"
        f"<td>{html.escape(str(r['list_fingerprint']))}</td><td>{r['n']}</td><td>{r['top1']:.3f}</td>"
        f"<td>{r['top5']:.3f}</td><td>{_run_link(r['id'])}</td></tr>" for _, r in frame[::-1].iterrows())
    body = (f"<p class=filters>{selects}</p>{''.join(cards)}<h2>Runs, newest first</h2><table id=trend-runs><thead><tr>"
            "<th>created</th><th>model</th><th>runtime</th><th>precision</th><th>sample list</th><th>n</th>"
            f"<th>top-1</th><th>top-5</th><th>run</th></tr></thead><tbody>{rows}</tbody></table>{FILTER_JS}")
    return pages.page("evalkit trends", body, _nav(0))


def run_page(run_dir: Path) -> str:
    """One run: metrics, what ran (model, runtime, recipe, dataset), the references, the gate's verdicts, warnings,
    per-class accuracy and the whole resolved config."""
    run = record.load(run_dir)
    classes = imagenet1k()
    per_class = pd.read_csv(run_dir / "per_class.csv")
    if "wnid" not in per_class:  # runs from before per_class.csv named its classes
        per_class.insert(1, "wnid", [classes.wnids[c] for c in per_class["label"]])
        per_class.insert(2, "class_name", [classes.names[c] for c in per_class["label"]])
    metrics = {k: v for k, v in run.metrics.items() if isinstance(v, (int, float, str, bool))}
    verdicts = [json.loads(p.read_text()) for p in sorted(run_dir.glob("gate-*.json"))]
    body = [
        f"<p>{html.escape(run.model_name)} on {html.escape(run.runtime_name)}, precision "
        f"{html.escape(run.precision_label)}, recipe {html.escape(run.recipe['family'])}, dataset "
        f"{html.escape(str(run.dataset.get('name')))} ({run.metrics['n']} images), created {html.escape(run.created)}</p>",
        "<h2>Metrics</h2>", pages.table(pd.DataFrame([metrics])),
        "<h2>Recipe</h2>", pages.table(pd.DataFrame([{"fingerprint": run.recipe.get("fingerprint"),
                                                       **run.recipe.get("params", {})}])),
        "<h2>References</h2>", pages.table(pd.DataFrame(run.reference_rows)) if run.reference_rows
        else "<p>no published number for this model</p>",
    ]
    for v in verdicts:
        checks = [gate.Check(**c) for c in v["checks"]]
        body += [f"<h2>Gate {html.escape(v['checked'])}: <span class='{gate.outcome(checks)}'>"
                 f"{gate.outcome(checks)}</span></h2>", pages.table(pd.DataFrame(v["checks"]))]
    if run.warnings:
        body += ["<h2>Warnings</h2><ul>", *(f"<li>{html.escape(w)}</li>" for w in run.warnings), "</ul>"]
    body += ["<h2>Per class</h2>", pages.table(per_class, id="per-class"),
             "<h2>Config</h2>", f"<pre>{html.escape(json.dumps(run.config, indent=2, default=str))}</pre>"]
    return pages.page(f"run {run.id}", "\n".join(body), _nav(1))


def _latest_runs(results: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The runs of the latest gate, or of the last sweep where no gate has run."""
    _, verdicts = latest_gate(results)
    if verdicts:
        return frame[frame["id"].isin([run.id for run, _ in verdicts])]
    return frame[(frame["sweep"] == history.last_sweep(frame, results)) & frame["shard"].isna()]


def build(results: Path, out: Path) -> Path:
    """Write the whole site into ``out``; returns its first page."""
    db = results / "history.sqlite"
    if not results.is_dir():
        raise UserError(f"--results {results}: no such folder")
    if not db.is_file():
        raise UserError(f"{db}: no history index; python -m evalkit.history rebuild --results {results} makes it")
    frame = history.runs(db)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "compare").mkdir(exist_ok=True)
    for run_id, path in zip(frame["id"], frame["path"]):
        (out / "runs" / f"{safe_name(run_id)}.html").write_text(run_page(Path(path)))
    comparisons = {}
    for (model, fingerprint), group in _latest_runs(results, frame).groupby(["model", "list_fingerprint"]):
        if len(group) > 1:
            fp32 = group[group["precision"] == "fp32"]
            baseline = (fp32 if not fp32.empty else group)["path"].iloc[0]
            name = f"compare/{safe_name(model)}-{str(fingerprint)[:8]}.html"
            compare.report(list(group["path"]), out / name, baseline, _nav(1))
            comparisons[f"{model}, sample list {str(fingerprint)[:8]} ({len(group)} runs)"] = name
    (out / "trends.html").write_text(trends_page(frame))
    (out / "index.html").write_text(index_page(results, comparisons))
    return out / "index.html"


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import exit_on_user_error

    parser = argparse.ArgumentParser(
        prog="python -m evalkit.report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write the nightly site: the latest gate, trends, one page per run, what flipped (static, "
                    "no server, no network).",
        epilog="example:\n  python -m evalkit.report --results results --out site/ && xdg-open site/index.html")
    parser.add_argument("--results", default="results", help="the results directory (default: results)")
    parser.add_argument("--out", default="site", help="the folder to write the site into (default: site)")
    args = parser.parse_args(argv)
    exit_on_user_error(lambda: print(f"wrote {build(Path(args.results), Path(args.out))}"))


if __name__ == "__main__":
    main()
