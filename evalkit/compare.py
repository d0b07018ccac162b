"""Compare runs side by side: where runtimes and recipes disagree, which images flipped, and whether it matters.

For notebooks::

    from evalkit import compare
    runs = compare.load(["results/run-a", "results/run-b"])     # or compare.load_history("results")
    compare.table(runs)                                         # one column per run: top-1, top-5, delta, img/s
    compare.agreement(runs)                                     # pairwise per-image top-1 agreement (%)
    compare.disagreements(runs.path[0], runs.path[1])           # the images where two runs differ, classes named
    compare.class_changes(runs.path[0], runs.path[1])           # the classes that lost and gained most
    compare.mcnemar(a, b); compare.bootstrap_diff(a, b)         # is the top-1 difference real?
    compare.versus(runs, baseline=runs.path[0])                 # each run against one: delta, agreement, McNemar p
    compare.logit_stats(a, b)                                   # when both stored logits

A run's label is made of what sets it apart from the other runs compared (model, runtime, precision as executed,
recipe family and parameters, sample list; its id as the last resort), so no two runs share one; tables are
keyed by run, never pivoted on a label.

``python -m evalkit.compare RUN... [--baseline RUN] [--html report.html] [--csv DIR]`` gives all of it from the
command line; the page shows each image that flipped against the baseline with its picture.
"""

from __future__ import annotations

import argparse
import html
import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from evalkit import history, pages, record
from evalkit.classes import imagenet1k
from evalkit.contract import K
from evalkit.errors import UserError
from evalkit.record import RunRecord

#: the flips shown per pair on a page (all of them are in --csv)
FLIPS_SHOWN = 500


def _recipe_apart(run: RunRecord, runs: Sequence[RunRecord]) -> list[str]:
    """The recipe parameters in which ``run`` differs from another compared run of its recipe family."""
    same = [r.recipe.get("params", {}) for r in runs if r.recipe["family"] == run.recipe["family"]]
    keys = sorted(set().union(*same) - {"family"})
    own = run.recipe.get("params", {})
    return [f"{k}={own.get(k, 'default')}" for k in keys
            if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in same}) > 1]


def labels(runs: Sequence[RunRecord]) -> list[str]:
    """One label per run, made of what differs between ``runs``: model, runtime, precision (with what executed),
    recipe family and parameters, sample list; the run id where that still leaves two alike. Unique."""
    aspects: list[tuple[Callable[[RunRecord], Any], Callable[[RunRecord], str]]] = [
        (lambda r: r.model_name, lambda r: r.model_name),
        (lambda r: r.runtime_name, lambda r: r.runtime_name),
        (lambda r: r.precision_label, lambda r: r.precision_label),
        (lambda r: r.recipe["family"], lambda r: r.recipe["family"]),
    ]
    varying = [shown for key, shown in aspects if len({key(r) for r in runs}) > 1]
    lists_vary = len({r.dataset.get("list_fingerprint") for r in runs}) > 1
    found = []
    for run in runs:
        parts = [shown(run) for shown in varying] + _recipe_apart(run, runs)
        if lists_vary:
            parts.append(f"{run.dataset.get('name')} ({run.dataset.get('n')} images)")
        found.append(", ".join(parts) or f"{run.runtime_name}, {run.precision_label}")
    repeated = Counter(found)
    return [f"{label}, {run.id}" if repeated[label] > 1 else label for label, run in zip(found, runs)]


def load(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run directory: what ran, its label, its accuracy, its delta to the first applicable reference,
    speed."""
    records = [record.load(p) for p in paths]
    twice = [i for i, n in Counter(r.id for r in records).items() if n > 1]
    if twice:
        raise UserError(f"run {twice[0]} is given twice")
    rows = []
    for path, run, label in zip(paths, records, labels(records)):
        refs = run.applicable_references
        rows.append({
            "id": run.id, "path": str(Path(path).resolve()), "model": run.model_name,
            "runtime": run.runtime_name, "precision": run.precision, "executed_precision": run.executed_precision,
            "recipe": run.recipe["family"], "label": label, "dataset": run.dataset.get("name"),
            "n": run.metrics["n"], **{f"top{k}": run.metrics[f"top{k}"] for k in range(1, 6)},
            "reference": refs[0]["source"] if refs else None, "ref_top1": refs[0]["ref_top1"] if refs else None,
            "delta_top1": run.metrics["top1"] - refs[0]["ref_top1"] if refs else None,
            "images_per_s": (run.timing or {}).get("images_per_s"),
        })
    return pd.DataFrame(rows)


def load_history(results: str | Path, **where: str) -> pd.DataFrame:
    """Runs from the history index, filtered by column values (e.g. model="cspresnext50")."""
    frame = history.runs(Path(results) / "history.sqlite")
    for column, value in where.items():
        frame = frame[frame[column] == value]
    return load(list(frame["path"]))


#: the rows of the side-by-side table
SIDE_BY_SIDE = ["model", "precision", "executed_precision", "dataset", "n", "top1", "top5", "reference", "ref_top1",
                "delta_top1", "images_per_s"]


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Side by side, one column per run (headed by its label): model, precision, n, top-1, top-5, the reference
    and the delta to it, images/s. Built by run id, so every number in a column is that run's own."""
    return runs.set_index("id")[SIDE_BY_SIDE].T.rename(columns=dict(zip(runs["id"], runs["label"]))).rename_axis(columns=None)


def _predictions(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(path) / "predictions.csv").set_index("id")


def _paired(a: str | Path, b: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    pa, pb = _predictions(a), _predictions(b)
    common = pa.index.intersection(pb.index)
    if common.empty:
        raise UserError(f"runs {a} and {b} share no image")
    if not (pa.loc[common, "label"] == pb.loc[common, "label"]).all():
        raise UserError(f"runs {a} and {b} label the same images differently; they used different datasets")
    return pa.loc[common], pb.loc[common]


def agreement(runs: pd.DataFrame) -> pd.DataFrame:
    """Pairwise per-image top-1 agreement (percent of the images both runs scored), by run label."""
    matrix = pd.DataFrame(100.0, index=list(runs["label"]), columns=list(runs["label"]))
    for i, a in enumerate(runs["path"]):
        for j, b in enumerate(runs["path"]):
            if i < j:
                pa, pb = _paired(a, b)
                matrix.iloc[i, j] = matrix.iloc[j, i] = 100.0 * float((pa["pred1"] == pb["pred1"]).mean())
    return matrix


def _flips(a: str | Path, b: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both runs' predictions of the images whose top-1 differs, in the same order."""
    pa, pb = _paired(a, b)
    differ = (pa["pred1"] != pb["pred1"]).to_numpy()
    return pa[differ], pb[differ]


def _top5(predictions: pd.DataFrame) -> list[list[tuple[int, float]]]:
    """Each image's top-5 as (class, probability) pairs; the probability is NaN where the run kept no logits."""
    top = predictions[[f"pred{k}" for k in range(1, K + 1)]].to_numpy()
    probs = (predictions[[f"prob{k}" for k in range(1, K + 1)]].to_numpy() if "prob1" in predictions
             else np.full(top.shape, np.nan))
    return [[(int(c), float(p)) for c, p in zip(cs, ps)] for cs, ps in zip(top, probs)]


def _class_name(c: int) -> str:
    return imagenet1k().names[c] if c >= 0 else "no prediction"


def _entry(c: int, p: float) -> str:
    return _class_name(c) + ("" if np.isnan(p) else f" {100 * p:.1f}%")


def disagreements(a: str | Path, b: str | Path) -> pd.DataFrame:
    """The images where the two runs' top-1 differ: id, path, the true class (label, wnid, name), both top-1
    predictions, who is right, and each run's top-5 (with probabilities where it kept its logits)."""
    pa, pb = _flips(a, b)
    classes = imagenet1k()
    out = pd.DataFrame({"path": pa.get("path"), "label": pa["label"],
                        "wnid": [classes.wnids[c] for c in pa["label"]],
                        "class_name": [classes.names[c] for c in pa["label"]],
                        "pred_a": pa["pred1"], "pred_b": pb["pred1"]})
    out["a_right"], out["b_right"] = out["pred_a"] == out["label"], out["pred_b"] == out["label"]
    out["top5_a"] = ["; ".join(_entry(c, p) for c, p in row) for row in _top5(pa)]
    out["top5_b"] = ["; ".join(_entry(c, p) for c, p in row) for row in _top5(pb)]
    return out.reset_index()


def class_changes(a: str | Path, b: str | Path, top: int = 10) -> pd.DataFrame:
    """The ``top`` classes whose top-1 fell most from run a to run b, then the ``top`` that rose most: per class
    the images, each run's top-1, the change in points and the images gained and lost."""
    pa, pb = _paired(a, b)
    hit_a, hit_b = pa["pred1"] == pa["label"], pb["pred1"] == pb["label"]
    per = pd.DataFrame({"label": pa["label"], "a": hit_a, "b": hit_b, "gained": hit_b & ~hit_a,
                        "lost": hit_a & ~hit_b}).groupby("label").agg(
        n=("a", "size"), top1_a=("a", "mean"), top1_b=("b", "mean"), gained=("gained", "sum"), lost=("lost", "sum"))
    per[["top1_a", "top1_b"]] *= 100.0
    per["delta"] = per["top1_b"] - per["top1_a"]
    ranked = pd.concat([per[per["delta"] < 0].sort_values("delta").head(top),
                        per[per["delta"] > 0].sort_values("delta", ascending=False).head(top)]).reset_index()
    classes = imagenet1k()
    ranked.insert(1, "wnid", [classes.wnids[c] for c in ranked["label"]])
    ranked.insert(2, "class_name", [classes.names[c] for c in ranked["label"]])
    return ranked


def _correct(a: str | Path, b: str | Path) -> tuple[np.ndarray, np.ndarray]:
    pa, pb = _paired(a, b)
    return (pa["pred1"] == pa["label"]).to_numpy(), (pb["pred1"] == pb["label"]).to_numpy()


def mcnemar(a: str | Path, b: str | Path) -> dict[str, float]:
    """Exact McNemar test on the images both runs scored: are the top-1 differences more than chance?"""
    ca, cb = _correct(a, b)
    only_a, only_b = int((ca & ~cb).sum()), int((~ca & cb).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(stats.binomtest(min(only_a, only_b), discordant, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p}


def bootstrap_diff(a: str | Path, b: str | Path, resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> dict[str, float]:
    """Paired bootstrap confidence interval for top-1(a) - top-1(b), in points."""
    ca, cb = _correct(a, b)
    diff = 100.0 * (ca.mean() - cb.mean())
    if (ca == cb).all():
        return {"diff": diff, "low": diff, "high": diff}
    res = stats.bootstrap((ca.astype(float), cb.astype(float)), lambda x, y, axis=-1: 100 * (x.mean(axis) - y.mean(axis)),
                          paired=True, n_resamples=resamples, confidence_level=confidence, method="percentile",
                          random_state=np.random.default_rng(seed))
    return {"diff": diff, "low": float(res.confidence_interval.low), "high": float(res.confidence_interval.high)}


def has_logits(run: str | Path) -> bool:
    return (Path(run) / "logits.npy").is_file()


def logit_stats(a: str | Path, b: str | Path) -> dict[str, float]:
    """Max abs logit difference and cosine similarity, for runs that stored logits (results.save_logits=true)."""
    if not (has_logits(a) and has_logits(b)):
        raise UserError("both runs need results.save_logits=true for logit statistics")
    ia, ib = _predictions(a).index, _predictions(b).index
    common = ia.intersection(ib)
    xa = np.load(Path(a) / "logits.npy")[ia.get_indexer(common)].astype(np.float64)
    xb = np.load(Path(b) / "logits.npy")[ib.get_indexer(common)].astype(np.float64)
    if xa.shape != xb.shape:
        raise UserError(f"logits of shape {xa.shape} and {xb.shape} cannot be compared")
    cos = (xa * xb).sum(1) / (np.linalg.norm(xa, axis=1) * np.linalg.norm(xb, axis=1))
    return {"max_abs_diff": float(np.abs(xa - xb).max()), "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def versus(runs: pd.DataFrame, baseline: str | Path, classes: int = 3) -> pd.DataFrame:
    """Each run against a baseline run of the same images (e.g. fp16 and int8 against fp32): top-1/top-5, the
    top-1 delta with its paired bootstrap CI, per-image top-1 agreement and flips, McNemar's p, logit statistics
    where both kept logits, and the ``classes`` classes whose top-1 changed most."""
    rows = []
    for _, run in runs.iterrows():
        pa, pb = _paired(baseline, run["path"])
        test, ci = mcnemar(baseline, run["path"]), bootstrap_diff(run["path"], baseline)
        changed = class_changes(baseline, run["path"], top=classes)
        changed = changed.loc[changed["delta"].abs().sort_values(ascending=False).index].head(classes)
        logits = (logit_stats(baseline, run["path"]) if has_logits(baseline) and has_logits(run["path"])
                  else {"max_abs_diff": None, "mean_cosine": None, "min_cosine": None})
        rows.append({"label": run["label"], "model": run["model"], "precision": run["precision"],
                     "executed": run.get("executed_precision"), "n": len(pa), "top1": run["top1"], "top5": run["top5"],
                     "delta_top1": ci["diff"], "ci_low": ci["low"], "ci_high": ci["high"],
                     "agreement": 100.0 * float((pa["pred1"] == pb["pred1"]).mean()),
                     "flips": int((pa["pred1"] != pb["pred1"]).sum()), "only_baseline_right": test["only_a_right"],
                     "only_run_right": test["only_b_right"], "mcnemar_p": test["p_value"],
                     **{f"logit_{k}": v for k, v in logits.items()},
                     "most_changed": ", ".join(f"{r.class_name} {r.delta:+.0f}" for r in changed.itertuples())})
    return pd.DataFrame(rows)


def _wrap(text: str, width: int = 18) -> str:
    return textwrap.fill(text, width, break_long_words=True)


def plot_accuracy(runs: pd.DataFrame, out: str | Path | None = None):
    """Top-1 per run (one bar each, labelled by its wrapped label), the applicable published reference marked."""
    plt = pages.pyplot()
    width = min(11, max(7, 1.8 * len(runs)))
    fig, ax = plt.subplots(figsize=(width, 4.5), layout="constrained")
    x = np.arange(len(runs))
    ax.bar(x, runs["top1"], color="#4c72b0")
    for i, ref in zip(x, runs["ref_top1"]):
        if ref is not None and ref == ref:
            ax.hlines(ref, i - 0.4, i + 0.4, colors="#c44e52", linestyles="--", label="published" if i == 0 else None)
    chars = max(8, int(12 * width / len(runs)))  # what one bar's width holds at 7 pt
    ax.set_xticks(x, [_wrap(f"#{i + 1} {label}", chars) for i, label in enumerate(runs["label"])], fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(max(0, runs["top1"].min() - 10), 100)
    ax.set_title("top-1 per run (dashed: published reference)", fontsize=10)
    return _save(fig, out)


def plot_agreement(matrix: pd.DataFrame, out: str | Path | None = None):
    """Heatmap of the pairwise per-image top-1 agreement; rows carry the runs' wrapped labels, columns their #."""
    plt = pages.pyplot()
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(min(11, 4.5 + 0.8 * n), min(9, 2.2 + 0.7 * n)), layout="constrained")
    low = min(90.0, float(matrix.to_numpy().min()))
    im = ax.imshow(matrix.to_numpy(), vmin=low, vmax=100, cmap="viridis")
    ax.set_xticks(range(n), [f"#{i + 1}" for i in range(n)], fontsize=8)
    ax.set_yticks(range(n), [f"#{i + 1} " + _wrap(label, 30) for i, label in enumerate(matrix.index)], fontsize=7)
    for i in range(n):
        for j in range(n):
            value = matrix.iat[i, j]
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                    color="k" if value > (low + 100) / 2 else "w")
    fig.colorbar(im, ax=ax, label="top-1 agreement (%)")
    ax.set_title("per-image top-1 agreement", fontsize=10)
    return _save(fig, out)


def plot_accuracy_vs_throughput(runs: pd.DataFrame, out: str | Path | None = None):
    """Top-1 against images/s, one marker per run; the legend names each (markers never collide with text)."""
    plt = pages.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2 + 0.25 * len(runs)), layout="constrained")
    markers = "osD^v<>pPX*h"
    for i, r in enumerate(runs.itertuples()):
        ax.scatter(r.images_per_s, r.top1, marker=markers[i % len(markers)], s=50,
                   label=f"#{i + 1} " + _wrap(f"{r.label} ({r.model})", 70))
    ax.set_xlabel("images/s (end to end)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("accuracy against throughput", fontsize=10)
    fig.legend(loc="outside lower center", fontsize=7, ncols=1, frameon=False)
    return _save(fig, out)


def _save(fig, out):
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=pages.DPI)
    return fig


def baseline_of(runs: pd.DataFrame, baseline: str | Path | None) -> str:
    """The path of the baseline run: ``baseline`` names one of ``runs`` by directory or id; None: the first."""
    if baseline is None:
        return runs["path"].iloc[0]
    hit = runs[(runs["path"] == str(Path(baseline).resolve())) | (runs["id"] == str(baseline))]
    if hit.empty:
        raise UserError(f"--baseline {baseline}: not one of the runs compared")
    return hit["path"].iloc[0]


def _top5_html(row: list[tuple[int, float]], label: int) -> str:
    items = "".join(f"<li{' class=hit' if c == label else ''}>{html.escape(_entry(c, p))}</li>" for c, p in row)
    return f"<ol class=top5>{items}</ol>"


def flip_section(runs: pd.DataFrame, base: str, other: str, number: int, shown: int = FLIPS_SHOWN) -> str:
    """The images whose top-1 differs between the baseline run and another, with their pictures, then the classes
    that changed most and the logit statistics."""
    name = dict(zip(runs["path"], runs["label"]))
    a, b = html.escape(name[base]), html.escape(name[other])
    pa, pb = _flips(base, other)
    test = mcnemar(base, other)
    parts = [f"<section class=pair id='pair-{number}'><h3>{b} against {a}</h3>",
             f"<p>{len(pa)} images with another top-1: {test['only_a_right']} only the baseline has right, "
             f"{test['only_b_right']} only this run, the rest neither (McNemar p = {test['p_value']:.3g}).</p>"]
    if has_logits(base) and has_logits(other):
        s = logit_stats(base, other)
        parts.append(f"<p>Logits: max abs difference {s['max_abs_diff']:.4g}, cosine mean {s['mean_cosine']:.6f}, "
                     f"min {s['min_cosine']:.6f}.</p>")
    changes = class_changes(base, other)
    if not changes.empty:
        parts += ["<h4>Classes that lost and gained most (top-1 in points)</h4>",
                  pages.table(changes.rename(columns={"top1_a": "top-1 baseline", "top1_b": "top-1 this run"}))]
    rows = []
    classes = imagenet1k()
    for (image, ra), (_, rb), top_a, top_b in zip(pa.head(shown).iterrows(), pb.head(shown).iterrows(),
                                                  _top5(pa.head(shown)), _top5(pb.head(shown))):
        label = int(ra["label"])
        uri = pages.thumbnail(ra.get("path"))
        picture = (f"<img class=thumb alt='{html.escape(str(image))}' src='{uri}'>" if uri
                   else "<span class=note>no picture</span>")
        right = a if ra["pred1"] == label else b if rb["pred1"] == label else "neither"
        rows.append(f"<tr class=flip><td>{picture}</td><td>{html.escape(str(image))}</td>"
                    f"<td>{classes.wnids[label]}<br>{html.escape(classes.names[label])}</td>"
                    f"<td>{_top5_html(top_a, label)}</td><td>{_top5_html(top_b, label)}</td><td>{right}</td></tr>")
    more = (f"<p class=note>the first {shown} of {len(pa)} shown; all of them: --csv</p>" if len(pa) > shown else "")
    parts.append(f"<h4>Images that flipped</h4>{more}<table class=flips id='flips-{number}'><thead><tr><th>picture</th>"
                 f"<th>image</th><th>true class</th><th>{a} (baseline) top-5</th><th>{b} top-5</th><th>right</th>"
                 f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>")
    return "\n".join(parts)


def report_body(paths: Sequence[str | Path], baseline: str | Path | None = None) -> str:
    """The comparison as HTML: the runs, side by side, against the baseline, the plots, the flips of each pair."""
    runs = load(paths)
    base = baseline_of(runs, baseline)
    matrix = agreement(runs)
    numbered = runs.drop(columns=["path"])
    numbered.insert(0, "#", [f"#{i + 1}" for i in range(len(runs))])
    others = [p for p in runs["path"] if p != base]
    body = [
        "<h2>Runs</h2>", pages.table(numbered, id="runs"),
        "<h2>Side by side</h2>", pages.table(table(runs), index=True, id="side-by-side"),
        "<h2>Per-image top-1 agreement (%)</h2>", pages.table(matrix, index=True),
        f"<h2>Against the baseline, {html.escape(runs.set_index('path').at[base, 'label'])}: top-1 delta with its "
        "paired bootstrap CI, exact McNemar test, logit statistics</h2>",
        pages.table(versus(runs, base), id="versus"),
        *(pages.figure(plot(arg)) for plot, arg in ((plot_accuracy, runs), (plot_agreement, matrix),
                                                    (plot_accuracy_vs_throughput, runs))),
        "<h2>What flipped</h2>",
        "<ul>" + "".join(f"<li><a href='#pair-{i}'>{html.escape(runs.set_index('path').at[p, 'label'])}</a></li>"
                         for i, p in enumerate(others)) + "</ul>",
        *(flip_section(runs, base, p, i) for i, p in enumerate(others)),
    ]
    return "\n".join(body)


def report(paths: Sequence[str | Path], out: str | Path, baseline: str | Path | None = None, nav: str = "") -> Path:
    """A static HTML page (no network needed to view it): ``report_body`` with pictures and plots inline."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(pages.page("evalkit comparison", report_body(paths, baseline), nav))
    return Path(out)


def write_csv(runs: pd.DataFrame, baseline: str, folder: Path) -> list[Path]:
    """Every table of the comparison as CSV: runs, side by side, agreement, versus, and per run against the
    baseline its flips and class changes."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def put(frame: pd.DataFrame, name: str, index: bool = False) -> None:
        frame.to_csv(folder / name, index=index)
        written.append(folder / name)

    put(runs, "runs.csv")
    put(table(runs), "side_by_side.csv", index=True)
    put(agreement(runs), "agreement.csv", index=True)
    put(versus(runs, baseline), "versus.csv")
    for path, run_id in zip(runs["path"], runs["id"]):
        if path != baseline:
            put(disagreements(baseline, path), f"flips-{run_id}.csv")
            put(class_changes(baseline, path), f"classes-{run_id}.csv")
    return written


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import exit_on_user_error

    parser = argparse.ArgumentParser(
        prog="python -m evalkit.compare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare runs side by side: accuracy, agreement, the images that flipped, and whether it matters.",
        epilog="example:\n  python -m evalkit.compare results/<fp32 run> results/<int8 run> --html report.html "
               "--csv compare/")
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--baseline", help="the run the others are compared with (a directory or run id; "
                                           "default: the first)")
    parser.add_argument("--html", help="write a static HTML report here (pictures of the flips inline)")
    parser.add_argument("--csv", help="write every table (flips and class changes per pair too) as CSV in this folder")
    args = parser.parse_args(argv)

    def run() -> None:
        runs = load(args.runs)
        base = baseline_of(runs, args.baseline)
        float_format = lambda v: f"{v:.3f}"  # noqa: E731
        with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 60):
            print(table(runs).to_string(float_format=float_format))
            print(agreement(runs).round(3).to_string())
            print(versus(runs, base).drop(columns=["model"]).to_string(index=False, float_format=float_format))
        if args.csv:
            print(f"wrote {len(write_csv(runs, base, Path(args.csv)))} CSV files to {args.csv}")
        if args.html:
            print(f"wrote {report(args.runs, args.html, base)}")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
