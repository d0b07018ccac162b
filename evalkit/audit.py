r"""Where the points went: the gap between a model's published top-1 and its deployed top-1, split into export,
recipe, precision and device, each step with its significance.

The audit evaluates a chain of settings on the same images, each one change from the one before:

    source     the model's own framework (runtime=torch), its source's recipe, fp32: the published number's setting
    export     ONNX Runtime, fp32, the source's recipe: the conversion to ONNX
    recipe     ONNX Runtime, fp32, the deployment's recipe (deploy.recipe, deploy.preprocess.*): preprocessing
    precision  ONNX Runtime, the deployment's precision as a transform (fp16; int8 Q/DQ simulated): quantisation
    device     the deployed runtime (deploy.runtime, deploy.runtime.*): the device's kernels and compiler

Each step is an ordinary run (cached, resumable, in the history); a step whose exact setting already ran on the
same images is reused, so auditing again costs nothing. A step that does not apply is skipped with its reason.

    python -m evalkit.audit model=demo dataset=imagefolder dataset.root=val deploy.precision=int8 deploy.runtime=openvino
    python -m evalkit.audit model=cspdarknet53 deploy.recipe=vastai/timm_cspdarknet53 deploy.precision=int8 \
        precision.calibration.root=calib deploy.runtime=ascend deploy.runtime.dump_dir=result/dumpOutput_device0
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shlex
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from omegaconf import OmegaConf
from scipy import stats

from evalkit import compare, gate, pages, preflight, record, zoo
from evalkit import dataset as datasets
from evalkit.config import Config, choices, compose
from evalkit.contract import GROUPS, PRECISIONS, plugins, safe_name, samples_fingerprint
from evalkit.errors import UserError
from evalkit.plugins import runtime_module
from evalkit.run import evaluate

#: the chain, in order, with what each step's delta measures
STEPS = {
    "source": "the residual between these images and weights and the published table",
    "export": "the conversion to ONNX",
    "recipe": "preprocessing",
    "precision": "quantisation itself",
    "device": "the device's kernels and compiler",
}


def _examples(doc: str) -> str:
    """The docstring's command lines, with their continuation lines."""
    lines: list[str] = []
    for line in doc.splitlines():
        if line.strip().startswith("python -m evalkit") or (lines and lines[-1].endswith("\\")):
            lines.append(line)
    return "\n".join(lines)


HELP = f"""usage: python -m evalkit.audit [overrides] [deploy.KEY=VALUE ...] [audit.alpha=0.05]

{__doc__.split(chr(10) + chr(10))[0]}

overrides: as for python -m evalkit (model=, dataset=, dataset.root=, precision.calibration.*, results.dir=, ...);
  the audit chooses each step's runtime and precision itself, so runtime= and precision= are not given.
deploy.recipe=ENTRY       the recipe of another zoo entry (python -m evalkit.zoo), applied to this model's weights
deploy.preprocess.KEY=V   a recipe key of the deployment (e.g. the model's own mean/std, which another entry's
                          recipe does not know); without deploy.recipe, a change of the source's recipe
deploy.precision=NAME     fp16, bf16 or int8 (calibrated as precision.calibration.* says)
deploy.runtime=NAME       the deployed runtime (openvino, trt, ort, or a device dump: ascend, vamp)
deploy.runtime.KEY=V      that runtime's own option runtime.KEY (e.g. deploy.runtime.dump_dir=DIR,
                          deploy.runtime.int8_kernels=true), checked against its schema
audit.alpha=A             the significance level of each step (default 0.05)

Writes <results.dir>/audit-<model>-<stamp>/audit.json and waterfall.png.

examples:
""" + _examples(__doc__)



@dataclass
class Deploy:
    """The deployment the source is audited against (``deploy.*`` on the command line)."""

    recipe: Optional[str] = None
    precision: Optional[str] = None
    runtime: Optional[str] = None
    #: ``runtime.KEY=VALUE`` overrides of the deployed runtime, given as ``deploy.runtime.KEY=VALUE``
    runtime_options: list[str] = field(default_factory=list)
    #: ``preprocess.KEY=VALUE`` overrides of the deployed recipe, given as ``deploy.preprocess.KEY=VALUE``
    preprocess: list[str] = field(default_factory=list)


@dataclass
class Step:
    name: str
    #: the overrides of ``python -m evalkit`` that make this step's run
    overrides: list[str]
    cfg: Optional[Config] = None
    #: why the step is skipped; None: it runs
    skipped: Optional[str] = None


def parse(args: list[str]) -> tuple[Deploy, float, list[str]]:
    """Split the audit's own ``deploy.*`` and ``audit.*`` arguments from the Hydra overrides; validate them."""
    deploy, alpha, rest = Deploy(), 0.05, []
    for arg in args:
        key, has_value, value = arg.partition("=")
        if not key.startswith(("deploy", "audit")):
            rest.append(arg)
            continue
        if not has_value:
            raise UserError(f"{arg}: give a value, e.g. {key}=...")
        if key.startswith("deploy.runtime."):
            deploy.runtime_options.append(f"runtime.{key[len('deploy.runtime.'):]}={value}")
        elif key.startswith("deploy.preprocess."):
            deploy.preprocess.append(f"preprocess.{key[len('deploy.preprocess.'):]}={value}")
        elif key in ("deploy.recipe", "deploy.precision", "deploy.runtime"):
            setattr(deploy, key.split(".")[1], value)
        elif key == "audit.alpha":
            try:
                alpha = float(value)
            except ValueError:
                raise UserError(f"audit.alpha={value} is not a number") from None
            if not 0 < alpha < 1:
                raise UserError(f"audit.alpha={value} must lie between 0 and 1")
        else:
            keys = ["deploy.recipe", "deploy.precision", "deploy.runtime", "deploy.runtime.KEY",
                    "deploy.preprocess.KEY", "audit.alpha"]
            close = difflib.get_close_matches(key, keys, n=1)
            raise UserError(f"unknown key {key}; " + (f"did you mean {close[0]}?" if close else
                                                      f"the audit's keys: {', '.join(keys)}"))
    if deploy.precision is not None and deploy.precision not in PRECISIONS:
        raise UserError(f"deploy.precision={deploy.precision} is not one of {', '.join(PRECISIONS)}")
    if deploy.recipe is not None and deploy.recipe not in zoo.names():
        close = difflib.get_close_matches(deploy.recipe, zoo.names(), n=3)
        raise UserError(f"deploy.recipe={deploy.recipe} is not a zoo entry" + (
            f"; did you mean {' or '.join(close)}?" if close else " (python -m evalkit.zoo lists them)"))
    if deploy.runtime is not None and deploy.runtime not in choices("runtime"):
        close = difflib.get_close_matches(deploy.runtime, choices("runtime"), n=3)
        raise UserError(f"deploy.runtime={deploy.runtime} is not a runtime; " + (
            f"did you mean {' or '.join(close)}?" if close else f"choices: {', '.join(choices('runtime'))}"))
    if deploy.runtime_options and deploy.runtime is None:
        raise UserError("deploy.runtime.KEY sets an option of the deployed runtime: name it with deploy.runtime=NAME")
    for arg in rest:
        key = arg.split("=", 1)[0].lstrip("+~")
        if key in ("runtime", "precision") or key.startswith("runtime."):
            raise UserError(f"{arg}: the audit sets each step's runtime and precision itself; the deployment's are "
                            "deploy.runtime=, deploy.runtime.KEY= and deploy.precision=")
    return deploy, alpha, rest


def _entry_recipe(name: str) -> list[str]:
    """The overrides that give a zoo entry's recipe (family and every parameter) to another model."""
    params = OmegaConf.to_container(OmegaConf.structured(zoo.load(name).preprocess), resolve=True, enum_to_str=True)
    family = params.pop("family")
    return [f"preprocess={family}", *(f"preprocess.{k}={json.dumps(v)}" for k, v in params.items())]


def _compose(step: str, overrides: list[str]) -> Config:
    try:
        return compose(overrides)
    except UserError as e:
        raise UserError(f"{step} step: {e}") from None


def chain(overrides: list[str], deploy: Deploy) -> list[Step]:
    """The five steps, each composed, or skipped with its reason."""
    base = [o for o in overrides if not o.lstrip("+~").startswith("precision.")]
    calibration = [o for o in overrides if o.lstrip("+~").startswith("precision.")]
    if deploy.recipe:
        recipe = [o for o in base if not o.lstrip("+~").startswith("preprocess")] + _entry_recipe(deploy.recipe)
    else:
        recipe = list(base)
    recipe += deploy.preprocess
    precision = deploy.precision or "fp32"
    steps = [Step("source", [*base, "runtime=torch"]), Step("export", [*base, "runtime=ort"]),
             Step("recipe", [*recipe, "runtime=ort"]),
             Step("precision", [*recipe, "runtime=ort", f"precision={precision}", *calibration])]
    if deploy.runtime is not None:
        reads_model = getattr(runtime_module(deploy.runtime), "MODEL_FROM", "onnx") is not None
        # a device dump is what the device computed: its precision is the device's, no setting of evalkit's
        device_precision = [f"precision={precision}", *calibration] if reads_model else []
        steps.append(Step("device", [*recipe, f"runtime={deploy.runtime}", *deploy.runtime_options,
                                     *device_precision]))
    else:
        steps.append(Step("device", [], skipped="no deploy.runtime: no device step"))
    for step in steps:
        if step.skipped is None:
            step.cfg = _compose(step.name, step.overrides)
    source, export, recipe_step, precision_step = steps[:4]
    model = export.cfg.model
    if not (model.weights or model.hub_id):
        source.skipped = "no PyTorch weights (model.onnx only): the audit starts at the export"
    if not (deploy.recipe or deploy.preprocess):
        recipe_step.skipped = "no deploy.recipe: the deployment uses the source's recipe"
    if precision == "fp32":
        precision_step.skipped = "fp32 deployment: no precision step"
    elif precision not in plugins(GROUPS["transform"]):
        precision_step.skipped = (f"{precision} is no ONNX transform (runtimes compute in it themselves): the device "
                                  "step measures precision and kernels together")
    previous = None
    for step in steps:  # a deployment that changes nothing in a step (its recipe is the source's, ...) has no step
        if step.skipped is None and previous is not None and setting(_resolved(step.cfg)) == setting(
                _resolved(previous.cfg)):
            step.skipped = f"the same setting as the {previous.name} step"
        previous = previous if step.skipped else step
    return steps


def setting(resolved: dict[str, Any]) -> dict[str, Any]:
    """What makes a run's result: the resolved config less where it is written, how fast, and how shown."""
    kept = {k: v for k, v in resolved.items() if k not in ("progress", "workers", "resume", "cache", "cache_dir",
                                                            "results")}
    return json.loads(json.dumps({**kept, "save_logits": resolved["results"]["save_logits"]}, default=str))


def _files(resolved: dict[str, Any]) -> list[list[Any]]:
    """Name, size and modification time of the files a step reads besides the images: the model files and what the
    runtime's options name (a device's dump folder), so a rewritten dump is another setting."""
    named = [resolved["model"].get("onnx"), resolved["model"].get("weights"), *resolved["runtime"].values()]
    found = []
    for value in named:
        if not isinstance(value, str) or not value or not Path(value).expanduser().exists():
            continue
        root = Path(value).expanduser()
        paths = sorted(root.rglob("*")) if root.is_dir() else [root]
        found += [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths if p.is_file()]
    return found


def _resolved(cfg: Config) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


def step_key(cfg: Config) -> tuple[str, str]:
    """(the step's key: its setting, sample list and files; the sample list's fingerprint)."""
    samples = datasets.shard(datasets.load(cfg.dataset, []), cfg.dataset.num_shards, cfg.dataset.shard)
    listed = samples_fingerprint(samples)
    resolved = _resolved(cfg)
    key = hashlib.sha256(json.dumps([setting(resolved), listed, _files(resolved)], sort_keys=True).encode())
    return key.hexdigest()[:16], listed


class StepCache:
    """``<results.dir>/.audit/steps.json``: a step's key -> the run made for it, reused while that run is there and
    its run.json still records the same setting and samples."""

    def __init__(self, results: Path) -> None:
        self.path = results / ".audit" / "steps.json"
        self.runs: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def find(self, key: str, cfg: Config, listed: str) -> Path | None:
        run_dir = self.runs.get(key)
        if run_dir is None or not (Path(run_dir) / "run.json").is_file():
            return None
        run = record.load(run_dir)
        same = setting(run.config) == setting(_resolved(cfg)) and run.dataset.get("list_fingerprint") == listed
        return Path(run_dir) if same else None

    def add(self, key: str, run_dir: Path) -> None:
        self.runs[key] = str(run_dir.resolve())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".tmp-{os.getpid()}-{self.path.name}")
        tmp.write_text(json.dumps(self.runs, indent=1))
        os.replace(tmp, self.path)


def run_steps(steps: list[Step]) -> dict[str, tuple[Path, bool]]:
    """Each step's run directory and whether it was reused. Every step's prerequisites are checked first."""
    active = [s for s in steps if s.skipped is None]
    missing = {f"{s.name} step: {p}": [] for s in active for p in preflight.problems(s.cfg)}
    preflight.refuse(missing)  # type: ignore[arg-type]
    cache = StepCache(Path(active[0].cfg.results.dir))
    found = {}
    for step in active:
        key, listed = step_key(step.cfg)
        run_dir = cache.find(key, step.cfg, listed)
        if run_dir is not None:
            print(f"audit: {step.name} step reused: {run_dir} (the same setting on the same images)")
            found[step.name] = (run_dir, True)
            continue
        print(f"audit: {step.name} step: python -m evalkit {shlex.join(step.overrides)}")
        try:
            run_dir = evaluate(step.cfg)
        except UserError as e:
            hint = " (deploy.runtime.KEY sets its runtime.KEY)" if step.name == "device" else ""
            raise UserError(f"{step.name} step{hint}: {e}") from None
        cache.add(key, run_dir)
        found[step.name] = (run_dir, False)
    return found


def published(run: record.RunRecord) -> dict[str, Any] | None:
    """The first published number whose recipe and test set match the run's (``reference.status`` judged it)."""
    rows = run.applicable_references
    return None if not rows else {"source": rows[0]["source"], "top1": rows[0]["ref_top1"],
                                  "setting": rows[0]["setting"]}


def _predicted(run_dir: Path) -> pd.Series:
    """Per image id, whether the run has a prediction for it (a dump's missing output has none)."""
    p = pd.read_csv(run_dir / "predictions.csv", usecols=["id", "pred1"], dtype={"id": str})
    return p.set_index("id")["pred1"] >= 0


def check_samples(runs: dict[str, Path], steps: list[Step]) -> dict[str, int]:
    """Refuse a step whose images differ from the first step's, or that lacks outputs the first step has (a dump
    missing images) unless its runtime's allow_missing counts them as wrong; returns those images' count per step."""
    names = list(runs)
    first = _predicted(runs[names[0]])
    counted = {}
    for name in names:
        found = _predicted(runs[name])
        differ = set(found.index) ^ set(first.index)
        if differ:
            raise UserError(f"the {name} step scored other images than the {names[0]} step: {len(differ)} images "
                            "differ; the audit compares runs of the same images only")
        lacking = int((first & ~found.reindex(first.index)).sum())
        if lacking and not getattr(next(s.cfg for s in steps if s.name == name).runtime, "allow_missing", False):
            raise UserError(f"the {name} step has no output for {lacking} of its {len(found)} images; set "
                            "deploy.runtime.allow_missing=true to count them as wrong")
        if lacking:
            counted[name] = lacking
    return counted


def paired_step(before: Path, after: Path, alpha: float) -> dict[str, Any]:
    """One step against the step before: delta, the images gained and lost, McNemar's p, a bootstrap CI."""
    a, b = record.load(before), record.load(after)
    flips, agreement, p = gate.paired(after, before)
    flipped = compare.disagreements(before, after)
    ci = compare.bootstrap_diff(after, before)
    return {"delta_top1": b.metrics["top1"] - a.metrics["top1"],
            "gained": sorted(flipped.loc[flipped["b_right"] & ~flipped["a_right"], "id"]),
            "lost": sorted(flipped.loc[flipped["a_right"] & ~flipped["b_right"], "id"]),
            "flips": flips, "agreement": agreement, "p_value": p, "ci95": [ci["low"], ci["high"]],
            "significant": p < alpha}


def against_published(run: record.RunRecord, number: float, alpha: float) -> dict[str, Any]:
    """The first step against the published number: an exact binomial test of its correct images against the
    published rate (the published number's own 50,000 images taken as exact), the run's 95 % CI shifted."""
    n, top1 = run.metrics["n"], run.metrics["top1"]
    p = float(stats.binomtest(round(top1 * n / 100), n, number / 100).pvalue)
    low, high = run.metrics["top1_ci95"]
    return {"delta_top1": top1 - number, "gained": [], "lost": [], "flips": None, "agreement": None,
            "p_value": p, "ci95": [low - number, high - number], "significant": p < alpha}


def _calibration(run: record.RunRecord) -> dict[str, Any] | None:
    return ((run.transform or {}).get("calibration")) or None


def analyse(steps: list[Step], runs: dict[str, tuple[Path, bool]], alpha: float) -> dict[str, Any]:
    """audit.json's content."""
    dirs = {name: run_dir for name, (run_dir, _) in runs.items()}
    counted = check_samples(dirs, steps)
    names = list(dirs)
    first = record.load(dirs[names[0]])
    ref = published(first)
    rows, warnings = [], []
    for i, name in enumerate(names):
        run = record.load(dirs[name])
        if i:
            compared = paired_step(dirs[names[i - 1]], dirs[name], alpha)
        elif ref:
            compared = against_published(run, ref["top1"], alpha)
        else:
            compared = {"delta_top1": None, "gained": [], "lost": [], "flips": None, "agreement": None,
                        "p_value": None, "ci95": None, "significant": False}
        row = {"name": name, "measures": STEPS[name], "against": names[i - 1] if i else "published" if ref else None,
               "run_dir": str(dirs[name]), "run_id": run.id, "reused": runs[name][1],
               "overrides": next(s.overrides for s in steps if s.name == name),
               "runtime": run.runtime_name, "precision": run.precision_label, "recipe": run.recipe["family"],
               "n": run.metrics["n"], "top1": run.metrics["top1"], "top5": run.metrics["top5"], **compared}
        if name in counted:
            row["counted_wrong"] = counted[name]
            warnings.append(f"the {name} step has no output for {counted[name]} images, counted as wrong "
                            "(allow_missing=true)")
        calibration = _calibration(run)
        if calibration is not None:
            row["calibration"] = calibration
            if calibration.get("overlapping_images"):
                warnings.append(f"the {name} step's {run.precision} calibration shares "
                                f"{calibration['overlapping_images']} images with the evaluated ones: its score is "
                                "flattered; give precision.calibration.root a separate set")
        rows.append(row)
    start = ref["top1"] if ref else rows[0]["top1"]
    end = rows[-1]["top1"]
    return {"model": first.model_name, "dataset": first.dataset.get("name"), "n": first.metrics["n"], "alpha": alpha,
            "created": datetime.now(timezone.utc).isoformat(), "published": ref,
            "end_to_end": {"from": "published" if ref else names[0], "to": names[-1], "delta_top1": end - start},
            "steps": rows, "skipped": [{"name": s.name, "reason": s.skipped} for s in steps if s.skipped],
            "warnings": warnings, "fix_first": fix_first(rows)}


def fix_first(rows: list[dict[str, Any]]) -> str | None:
    """The significant step that lost most; None when no step lost significantly."""
    losing = [r for r in rows if r["significant"] and r["delta_top1"] < 0]
    return min(losing, key=lambda r: r["delta_top1"])["name"] if losing else None


def summary(audit: dict[str, Any]) -> str:
    """``published 74.830 -> device 72.000: recipe -2.000 (p=0.008), export 0.000, precision -0.830 (n.s.)``:
    the significant steps first, largest loss first, then the rest in chain order."""
    rows = [r for r in audit["steps"] if r["delta_top1"] is not None]
    significant = sorted((r for r in rows if r["significant"]), key=lambda r: r["delta_top1"])
    rest = [r for r in rows if not r["significant"]]

    def said(r: dict[str, Any]) -> str:
        if r["significant"]:
            return f"{r['name']} {r['delta_top1']:+.3f} (p={r['p_value']:.2g})"
        return f"{r['name']} {r['delta_top1']:+.3f}" + (" (n.s.)" if r["delta_top1"] or r["flips"] else "")

    start = audit["published"]["top1"] if audit["published"] else audit["steps"][0]["top1"]
    line = (f"{audit['end_to_end']['from']} {start:.3f} -> {audit['end_to_end']['to']} {audit['steps'][-1]['top1']:.3f}"
            f" ({audit['end_to_end']['delta_top1']:+.3f} on {audit['n']} images): "
            + ", ".join(said(r) for r in significant + rest))
    fix = audit["fix_first"]
    return line + (f"; fix first: {fix}" if fix else f"; no step lost significantly at alpha={audit['alpha']:g}")


def table(audit: dict[str, Any]) -> str:
    """The steps as a text table: top-1/top-5, the delta, images gained and lost, p, CI, verdict."""
    lines = [f"{'step':<10} {'runtime':<9} {'precision':<44} {'top-1':>7} {'top-5':>7} {'delta':>7} "
             f"{'+img':>5} {'-img':>5} {'p':>8} {'95% CI of delta':>18}  verdict"]
    for r in audit["steps"]:
        delta = "-" if r["delta_top1"] is None else f"{r['delta_top1']:+.3f}"
        p = "-" if r["p_value"] is None else f"{r['p_value']:.3g}"
        ci = "-" if r["ci95"] is None else f"{r['ci95'][0]:+.2f}..{r['ci95'][1]:+.2f}"
        verdict = ("significant" if r["significant"] else "n.s.") + (" (vs published)" if r["against"] == "published"
                                                                     else "")
        lines.append(f"{r['name']:<10} {r['runtime']:<9} {r['precision'][:44]:<44} {r['top1']:>7.3f} "
                     f"{r['top5']:>7.3f} {delta:>7} {len(r['gained']):>5} {len(r['lost']):>5} {p:>8} {ci:>18}  "
                     f"{verdict}")
    return "\n".join(lines)


def waterfall(audit: dict[str, Any], out: Path) -> None:
    """From the published number (or the first step) through each step's delta to the last step's top-1; a step
    that is not significant is drawn pale."""
    plt = pages.pyplot()
    rows = [r for r in audit["steps"] if r["delta_top1"] is not None]
    start = audit["published"]["top1"] if audit["published"] else audit["steps"][0]["top1"]
    first = (f"published\n({audit['published']['source']})" if audit["published"] else audit["end_to_end"]["from"])
    labels = [first] + [r["name"] for r in rows] + [f"{audit['end_to_end']['to']}\n(end)"]
    levels = [start]
    for r in rows:
        levels.append(levels[-1] + r["delta_top1"])
    low, high = min(levels), max(levels)
    margin = max(1.0, (high - low) * 0.25)
    fig, ax = plt.subplots(figsize=(1.5 * len(labels) + 2, 4.5), layout="constrained")
    ax.bar(0, start, color="#4c72b0")
    for i, r in enumerate(rows, start=1):
        color = "#55a868" if r["delta_top1"] >= 0 else "#c44e52"
        ax.bar(i, r["delta_top1"] or 0.02, bottom=levels[i - 1], color=color, alpha=1.0 if r["significant"] else 0.35,
               edgecolor=color)
        note = f"{r['delta_top1']:+.2f}\n" + ("p={:.2g}".format(r["p_value"]) if r["significant"] else "n.s.")
        ax.text(i, max(levels[i - 1], levels[i]) + margin * 0.08, note, ha="center", va="bottom", fontsize=8)
    ax.bar(len(labels) - 1, levels[-1], color="#4c72b0")
    for i, level in ((0, start), (len(labels) - 1, levels[-1])):
        ax.text(i, level + margin * 0.08, f"{level:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"{audit['model']}: where the points went (n={audit['n']}, pale: not significant at "
                 f"alpha={audit['alpha']:g})", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=pages.DPI)
    plt.close(fig)


def write(audit: dict[str, Any], results: Path) -> Path:
    """``<results>/audit-<model>-<stamp>/`` with audit.json and waterfall.png, written atomically."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    final = results / f"audit-{safe_name(audit['model'], 60)}-{stamp}-{uuid.uuid4().hex[:6]}"
    tmp = results / f".tmp-{final.name}"
    try:
        tmp.mkdir(parents=True)
        waterfall(audit, tmp / "waterfall.png")
        (tmp / "audit.json").write_text(json.dumps(audit, indent=2, default=str))
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def audit(args: list[str]) -> Path:
    """The whole audit for a command line's arguments; returns its folder."""
    deploy, alpha, overrides = parse(args)
    steps = chain(overrides, deploy)
    for s in steps:
        if s.skipped:
            print(f"audit: {s.name} step skipped: {s.skipped}")
    runs = run_steps(steps)
    found = analyse(steps, runs, alpha)
    folder = write(found, Path(next(s.cfg for s in steps if s.cfg is not None).results.dir))
    reused = sum(r["reused"] for r in found["steps"])
    print(table(found))
    for s in found["skipped"]:
        print(f"skipped {s['name']}: {s['reason']}")
    for w in found["warnings"]:
        print(f"WARNING: {w}", file=sys.stderr)
    print(summary(found))
    print("all steps reused: nothing evaluated" if reused == len(found["steps"]) else
          f"evaluated {len(found['steps']) - reused} of {len(found['steps'])} steps, reused {reused}")
    print(f"audit written to {folder}")
    return folder


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import exit_on_user_error, print_help_if_asked, stop_on_sigterm

    args = list(sys.argv[1:] if argv is None else argv)
    print_help_if_asked(args, HELP)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    stop_on_sigterm()
    exit_on_user_error(lambda: audit(args))


if __name__ == "__main__":
    main()
