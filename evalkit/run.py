"""One evaluation: dataset -> recipe -> runtime -> scorer -> run record.

The function behind ``python -m evalkit``, also for notebooks:

    from evalkit.config import compose
    from evalkit.run import evaluate
    run_dir = evaluate(compose(["model=cspresnext50", "dataset=imagefolder", "dataset.root=val"]))
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import OmegaConf

import evalkit
from evalkit import preprocess
from evalkit import dataset as datasets
from evalkit import cache, history, pipeline, preflight, record, reference, resume, runlog, weights
from evalkit.classes import imagenet1k
from evalkit.config import Config, cache_dir, tensor_cache_dir
from evalkit.errors import UserError, capped
from evalkit.export import RECIPE_KEY
from evalkit.contract import OfflineRuntime, Runtime, cpu_cores, dist_versions, samples_fingerprint
from evalkit.plugins import make_context, open_runtime
from evalkit.precision import Transformed
from evalkit.scoring import Scorer, annotate
from evalkit.workers import default_workers
from evalkit.preprocess import Recipe, params_dict


#: the demo's photos (dataset=demo): its runs are not added to the history
DEMO_DATASET = "demo"


def check_compatible(runtime: Runtime, recipe: Recipe, num_classes: int) -> list[str]:
    """Fail on a model/recipe shape or class-count mismatch; return warnings (recipe drift)."""
    if runtime.input_shape is not None:
        want, got = runtime.input_shape, recipe.output_shape
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            raise UserError(
                f"the model takes input {tuple(want)} but the {recipe.family} recipe makes {got}; "
                "set preprocess.size (timm: or preprocess.input_size=[3,H,W]) to the model's input size, "
                "or pick the model's own recipe"
            )
    if runtime.num_outputs is not None and runtime.num_outputs not in (num_classes, num_classes + 1):
        raise UserError(
            f"the model has {runtime.num_outputs} outputs but ImageNet-1k has {num_classes} classes "
            f"({num_classes + 1} with background); check model.onnx and model.num_classes"
        )
    warnings = []
    stored = runtime.metadata.get(RECIPE_KEY)
    if stored is not None:
        exported, configured = json.loads(stored), params_dict(recipe.params)

        def shown(params: dict, key: str) -> str:  # params_dict leaves some fields out at their default
            return repr(params[key]) if key in params else "its default"

        diff = sorted(k for k in exported.keys() | configured.keys() if exported.get(k) != configured.get(k))
        if diff:
            warnings.append("recipe differs from the one the model was exported with: " + "; ".join(
                f"{k}: exported {shown(exported, k)}, configured {shown(configured, k)}" for k in diff))
    return warnings


def check_gpu_decode(runtime: Runtime | OfflineRuntime, recipe: Recipe) -> None:
    """``dataset.decode=gpu`` needs a runtime that takes pixels on a GPU and a recipe that decodes there."""
    if getattr(runtime, "decode_device", None) is None:
        raise UserError("dataset.decode=gpu decodes the images on the GPU the runtime computes on: use "
                        "runtime=torch runtime.device=cuda, or dataset.decode=cpu")
    if not hasattr(recipe.module, "pixels_torch"):
        raise UserError(f"dataset.decode=gpu: recipe family {recipe.family} decodes on the CPU only; "
                        "use dataset.decode=cpu")


def recipe_record(recipe: Recipe, decode: str) -> dict:
    """What the run records of its recipe. A GPU-decoded one is not the recipe's own pixels: it says so, and its
    fingerprint differs (no comparison or cache takes it for the CPU recipe)."""
    made = {"family": recipe.family, "params": params_dict(recipe.params), "fingerprint": recipe.fingerprint,
            "libraries": recipe.libraries}
    if decode == "gpu":
        libraries = dist_versions(("torch", "torchvision"))
        made.update(decode="gpu: torchvision decode_jpeg (nvJPEG), antialiased tensor resize",
                    bit_exact=False,
                    libraries={**made["libraries"], **libraries}, fingerprint=hashlib.sha256(
                        json.dumps([made["fingerprint"], "decode=gpu", libraries]).encode()).hexdigest()[:16])
    return made


def evaluate(cfg: Config, sweep: str | None = None) -> Path:
    """The whole run; returns the run directory. ``sweep`` names the multirun it belongs to.

    What libraries say goes to the run's log.txt, not the terminal (``evalkit.runlog``).
    """
    with runlog.capture() as log:
        return _evaluate(cfg, sweep, log)


def _evaluate(cfg: Config, sweep: str | None, log: runlog.RunLog) -> Path:
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    missing = preflight.problems(cfg)
    notes: list[str] = []
    try:
        full = datasets.load(cfg.dataset, notes)
    except UserError as e:
        missing.append(str(e))
    preflight.refuse(missing)
    recipe = preprocess.build(cfg.preprocess)
    space = datasets.label_space(cfg.dataset)
    samples = datasets.shard(full, cfg.dataset.num_shards, cfg.dataset.shard)
    list_fingerprint = samples_fingerprint(samples)
    classes = imagenet1k()
    print(f"model {cfg.model.name} ({cfg.model.source}) on runtime {cfg.runtime.name}, precision "
          f"{cfg.precision.name}, dataset {cfg.dataset.name}: {len(samples)} images")
    print(f"recipe {recipe.family}:\n{recipe.describe()}")
    tensor_cache = tensor_cache_dir(cfg)
    context = make_context(cfg.model, recipe, cache_dir(cfg), samples, tensor_cache, cfg.precision)
    runtime = open_runtime(cfg.runtime, context)
    transformed: Transformed = context.onnx_file  # type: ignore[assignment]
    extra: dict = {}
    dump: dict | None = None
    try:
        started = time.perf_counter()
        if cfg.dataset.decode == "gpu":
            check_gpu_decode(runtime, recipe)
        if isinstance(runtime, OfflineRuntime):
            warnings: list[str] = []
            scorer = Scorer(cfg.metrics, len(classes), cfg.dataset, space)
            scorer, report = pipeline.evaluate_offline(samples, runtime, scorer, progress=cfg.progress)
            outcome = pipeline.Outcome(scorer, None, None)
            dump = report.record()
            if report.missing or report.unusable:
                warnings.append(f"{report.problems()}; counted as wrong (runtime.allow_missing=true)")
            if report.extra:
                print(f"note: {len(report.extra)} outputs match no image of the dataset (e.g. {report.extra[0]})")
        else:
            warnings = check_compatible(runtime, recipe, len(classes))
            extra["batch_size"] = runtime.fixed_batch or cfg.runtime.batch_size
            # what workers=0 chose on this machine; more than its cores only contend for them
            cfg.workers = extra["decode_workers"] = capped("workers", cfg.workers or default_workers(), cpu_cores())
            outcome = resume.evaluate(cfg, resolved, samples, list_fingerprint, recipe, runtime,
                                      extra["batch_size"], len(classes), tensor_cache, space)
            if outcome.bad:
                first = next(iter(outcome.bad.items()))
                warnings.append(f"{len(outcome.bad)} images could not be used and count as wrong "
                                f"(dataset.bad_images=count_wrong), e.g. {first[0]}: {first[1]}")
            overlap = transformed.overlap(outcome.digests)
            if overlap:
                warnings.append(overlap)
            if outcome.repaired:
                warnings.append(f"tensor cache repaired: {outcome.repaired} damaged row(s) (cut off, or failing their "
                                "checksum) prepared again from their images")
        seconds = time.perf_counter() - started
        for w in warnings:
            print(f"WARNING: {w}", file=sys.stderr)
        warnings = notes + warnings  # the reader's were printed when it ran
        runtime_info = runtime.info()
    finally:
        runtime.close()
    result = outcome.scorer.result()
    result.predictions.insert(2, "path", [str(s.path) for s in samples])
    result.predictions = annotate(result.predictions, outcome.logits, space)
    table = reference.compare(result.metrics, cfg.model.references, params_dict(recipe.params), cfg.dataset.test_set)
    run_id = record.new_run_id(cfg.model.name, cfg.runtime.name, cfg.precision.name)
    run = record.RunRecord(
        id=run_id,
        created=datetime.now(timezone.utc).isoformat(),
        evalkit=evalkit.__version__,
        metrics=result.metrics,
        model={**resolved["model"],
               "resolved_weights": weights.resolve(cfg.model).record() if preflight.uses_weights(cfg) else None},
        runtime={**resolved["runtime"], "info": runtime_info, **extra},
        recipe=recipe_record(recipe, cfg.dataset.decode),
        dataset={"name": cfg.dataset.name, "layout": cfg.dataset.layout, **datasets.reader_keys(cfg.dataset),
                 "n": len(samples), "list_fingerprint": list_fingerprint,
                 **({"label_space": space} if space is not None else {}),
                 "content_fingerprint": None if outcome.digests is None else
                 pipeline.content_fingerprint(samples, outcome.digests),
                 **({"shard": [cfg.dataset.shard, cfg.dataset.num_shards], "full_n": len(full),
                     "full_list_fingerprint": samples_fingerprint(full)} if cfg.dataset.num_shards > 1 else {})},
        reference={"comparable": reference.comparable(result.metrics["n"]),
                   "rows": reference.records(table)},
        timing={"seconds": seconds, "images_per_s": len(samples) / seconds if seconds else None},
        dump=dump,
        bad_images=record.bad_images(len(outcome.bad), outcome.bad),
        sweep=sweep,
        warnings=warnings,
        versions=record.versions(),
        config=resolved,
        transform=transformed.record,
    )
    print(reference.format_table(result.metrics, table))
    print(f"precision: {run.precision_label}")
    checkpoint = resume.folder(cfg, resolved, list_fingerprint)
    try:
        run_dir = record.write(Path(cfg.results.dir), run_id, run, result, outcome.logits, log.text())
    except OSError as e:  # the scores are in the checkpoint: resume=true writes them without scoring again
        kept = (f"; the scores are kept in {checkpoint}: fix it and run the same command with resume=true to write "
                "the run without scoring again") if checkpoint.is_dir() else ""
        raise UserError(f"the run could not be written to {cfg.results.dir}: {e.strerror or e}{kept}") from e
    resume.Checkpoint(checkpoint).clear()  # only now that the run has landed
    if cfg.cache.max_gb is not None:
        removed, freed = cache.prune(cache_dir(cfg), max_gb=cfg.cache.max_gb)
        if removed:
            print(f"cache: removed {len(removed)} least recently used entries ({freed / 1e9:.2f} GB) to stay within "
                  f"cache.max_gb={cfg.cache.max_gb:g}")
    if cfg.results.history and cfg.dataset.name != DEMO_DATASET:  # 4 demo photos are no point of a trend
        history.add_safely(Path(cfg.results.history), run_dir)
    print(f"run written to {run_dir}")
    return run_dir
