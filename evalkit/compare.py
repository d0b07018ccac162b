"""Compare runs side by side: where runtimes and recipes disagree, and whether it matters.

For notebooks::

    from evalkit import compare
    runs = compare.load(["results/run-a", "results/run-b"])     # or compare.load_history("results")
    compare.table(runs)                                         # model x runtime/recipe: top-1, top-5, delta, img/s
    compare.agreement(runs)                                     # pairwise per-image top-1 agreement (%)
    compare.disagreements(runs.path[0], runs.path[1])           # the images where two runs differ
    compare.mcnemar(a, b); compare.bootstrap_diff(a, b)         # is the top-1 difference real?
    compare.versus(runs, baseline=runs.path[0])                 # each run against one: delta, agreement, McNemar p
    compare.logit_stats(a, b)                                   # when both stored logits

The same as a static page::

    python -m evalkit.compare results/<run a> results/<run b> --html report.html
"""

from __future__ import annotations

import argparse
import base64
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from evalkit import history, record
from evalkit.errors import UserError
from evalkit.record import RunRecord


def _label(run: RunRecord) -> str:
    """How a run is named in tables and plots: runtime, precision (where not fp32, or where what ran differs) and recipe."""
    label = run.precision_label
    runtime = run.runtime_name + ("" if label == record.DEFAULT_PRECISION else f" {label}")
    return f"{runtime} / {run.recipe['family']}"


def load(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run directory: what ran, its accuracy, its delta to the first applicable reference, speed."""
    rows = []
    for path in paths:
        run = record.load(path)
        refs = run.applicable_references
        rows.append({
            "id": run.id, "path": str(Path(path).resolve()), "model": run.model_name,
            "runtime": run.runtime_name, "precision": run.precision, "executed_precision": run.executed_precision,
            "recipe": run.recipe["family"], "label": _label(run), "n": run.metrics["n"],
            **{f"top{k}": run.metrics[f"top{k}"] for k in range(1, 6)},
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


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Model x runtime/recipe, with top-1, top-5, delta to the reference and throughput side by side."""
    return runs.pivot_table(index="model", columns="label", values=["top1", "top5", "delta_top1", "images_per_s"],
                            aggfunc="last").swaplevel(0, 1, axis=1).sort_index(axis=1)


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
    """Pairwise per-image top-1 agreement (percent of the images both runs scored)."""
    labels = list(runs["label"] + " | " + runs["model"])
    matrix = pd.DataFrame(100.0, index=labels, columns=labels)
    for i, a in enumerate(runs["path"]):
        for j, b in enumerate(runs["path"]):
            if i < j:
                pa, pb = _paired(a, b)
                matrix.iloc[i, j] = matrix.iloc[j, i] = 100.0 * float((pa["pred1"] == pb["pred1"]).mean())
    return matrix


def disagreements(a: str | Path, b: str | Path) -> pd.DataFrame:
    """The images where the two runs' top-1 differ: id, path, label, both predictions, who is right."""
    pa, pb = _paired(a, b)
    differ = pa["pred1"] != pb["pred1"]
    out = pd.DataFrame({"path": pa.loc[differ].get("path"), "label": pa.loc[differ, "label"],
                        "pred_a": pa.loc[differ, "pred1"], "pred_b": pb.loc[differ, "pred1"]})
    out["a_right"], out["b_right"] = out["pred_a"] == out["label"], out["pred_b"] == out["label"]
    return out.reset_index()


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


def logit_stats(a: str | Path, b: str | Path) -> dict[str, float]:
    """Max abs logit difference and cosine similarity, for runs that stored logits (results.save_logits=true)."""
    la, lb = (Path(p) / "logits.npy" for p in (a, b))
    if not (la.is_file() and lb.is_file()):
        raise UserError("both runs need results.save_logits=true for logit statistics")
    ia, ib = _predictions(a).index, _predictions(b).index
    common = ia.intersection(ib)
    xa = np.load(la)[ia.get_indexer(common)].astype(np.float64)
    xb = np.load(lb)[ib.get_indexer(common)].astype(np.float64)
    if xa.shape != xb.shape:
        raise UserError(f"logits of shape {xa.shape} and {xb.shape} cannot be compared")
    cos = (xa * xb).sum(1) / (np.linalg.norm(xa, axis=1) * np.linalg.norm(xb, axis=1))
    return {"max_abs_diff": float(np.abs(xa - xb).max()), "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def versus(runs: pd.DataFrame, baseline: str | Path, classes: int = 3) -> pd.DataFrame:
    """Each run against a baseline run of the same images (e.g. fp16 and int8 against fp32): top-1/top-5, their
    delta, per-image top-1 agreement, McNemar's p and the ``classes`` classes whose top-1 changed most."""
    from evalkit.classes import imagenet1k

    rows = []
    for _, run in runs.iterrows():
        pa, pb = _paired(baseline, run["path"])
        hit_a, hit_b = pa["pred1"] == pa["label"], pb["pred1"] == pb["label"]
        per_class = (hit_b.astype(float) - hit_a.astype(float)).groupby(pa["label"]).mean() * 100.0
        changed = per_class[per_class != 0].sort_values(key=abs, ascending=False).head(classes)
        test = mcnemar(baseline, run["path"])
        rows.append({"label": run["label"], "precision": run["precision"], "executed": run.get("executed_precision"),
                     "top1": run["top1"], "top5": run["top5"],
                     "delta_top1": 100.0 * float(hit_b.mean() - hit_a.mean()),
                     "agreement": 100.0 * float((pa["pred1"] == pb["pred1"]).mean()), "mcnemar_p": test["p_value"],
                     "most_changed": ", ".join(f"{imagenet1k().names[c]} {d:+.0f}" for c, d in changed.items()),
                     "n": len(pa)})
    return pd.DataFrame(rows)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(runs: pd.DataFrame, out: str | Path | None = None):
    """Top-1 per run, the applicable published reference marked."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(runs)), 4))
    names = runs["label"] + "\n" + runs["model"]
    ax.bar(names, runs["top1"], color="#4c72b0")
    for x, ref in enumerate(runs["ref_top1"]):
        if ref is not None and ref == ref:
            ax.hlines(ref, x - 0.4, x + 0.4, colors="#c44e52", linestyles="--", label="published" if x == 0 else None)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(max(0, runs["top1"].min() - 10), 100)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("top-1 per runtime / recipe (dashed: published reference)")
    fig.tight_layout()
    return _save(fig, out)


def plot_agreement(matrix: pd.DataFrame, out: str | Path | None = None):
    """Heatmap of the pairwise per-image top-1 agreement."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(2 + 0.9 * len(matrix), 1.5 + 0.8 * len(matrix)))
    low = min(90.0, float(matrix.to_numpy().min()))
    im = ax.imshow(matrix.to_numpy(), vmin=low, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(matrix)), matrix.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(matrix)), matrix.index, fontsize=7)
    for i in range(len(matrix)):
        for j in range(len(matrix)):
            value = matrix.iat[i, j]
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                    color="k" if value > (low + 100) / 2 else "w")
    fig.colorbar(im, ax=ax, label="top-1 agreement (%)")
    fig.tight_layout()
    return _save(fig, out)


def plot_accuracy_vs_throughput(runs: pd.DataFrame, out: str | Path | None = None):
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(runs["images_per_s"], runs["top1"])
    for _, r in runs.iterrows():
        ax.annotate(f"{r['label']} {r['model']}", (r["images_per_s"], r["top1"]), fontsize=7)
    ax.set_xlabel("images/s (end to end)")
    ax.set_ylabel("top-1 (%)")
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out):
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    return fig


def report(paths: Sequence[str | Path], out: str | Path) -> Path:
    """A static HTML page: the runs, the side-by-side table, the agreement matrix and the three plots."""
    runs = load(paths)
    matrix = agreement(runs)
    images = []
    for plot, arg in ((plot_accuracy, runs), (plot_agreement, matrix), (plot_accuracy_vs_throughput, runs)):
        buf = io.BytesIO()
        fig = plot(arg)
        fig.savefig(buf, format="png", dpi=110)
        _figure().close(fig)
        images.append(base64.b64encode(buf.getvalue()).decode())
    tests = []
    for i in range(1, len(runs)):
        m, b = mcnemar(runs.path[0], runs.path[i]), bootstrap_diff(runs.path[0], runs.path[i])
        tests.append({"a": runs.label[0] + " " + runs.model[0], "b": runs.label[i] + " " + runs.model[i],
                      **m, "diff_top1": b["diff"], "ci_low": b["low"], "ci_high": b["high"]})
    fmt = {"float_format": lambda v: f"{v:.3f}", "na_rep": "-"}
    body = [
        "<h1>evalkit comparison</h1>",
        "<h2>Runs</h2>", runs.drop(columns=["path"]).to_html(index=False, **fmt),
        "<h2>Side by side</h2>", table(runs).to_html(**fmt),
        "<h2>Per-image top-1 agreement (%)</h2>", matrix.to_html(**fmt),
        "<h2>Against the first run: exact McNemar test and paired bootstrap CI of the top-1 difference</h2>",
        pd.DataFrame(tests).to_html(index=False, **fmt) if tests else "<p>one run only</p>",
        *[f'<p><img src="data:image/png;base64,{img}"></p>' for img in images],
    ]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>evalkit comparison</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>" + "\n".join(body) + "</body></html>")
    Path(out).write_text(page)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import examples, exit_on_user_error

    parser = argparse.ArgumentParser(prog="python -m evalkit.compare", description="Compare runs side by side.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=examples(__doc__))
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--html", help="write a static HTML report here")
    args = parser.parse_args(argv)

    def run() -> None:
        runs = load(args.runs)
        with pd.option_context("display.width", 200):
            print(runs.drop(columns=["path", "id"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            print(agreement(runs).round(3).to_string())
        if args.html:
            print(f"wrote {report(args.runs, args.html)}")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
