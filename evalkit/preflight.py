"""Before any work, every missing prerequisite of a run or of a whole sweep at once, each with its fix.

A run needs the runtime's libraries (and a GPU where it computes on one), the model's weights or ONNX file, a
precision the runtime can run, and its dataset. A run checks them all before it reads an image; a sweep checks
every point before it launches one (``Preflight``, a Hydra callback), so a nightly with seven missing
checkpoints says so once, naming all seven, instead of failing seven times.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from evalkit import dataset as datasets
from evalkit import history, weights
from evalkit.commands import exit_on_user_error
from evalkit.config import Config, follow_overrides, job_compose, to_object
from evalkit.errors import UserError
from evalkit.plugins import check_precision, runtime_module


def problems(cfg: Config) -> list[str]:
    """What this run lacks besides its dataset: the runtime's prerequisites, the precision, the model file."""
    found = []
    module = runtime_module(cfg.runtime.name)
    found += getattr(module, "preflight", lambda options: [])(cfg.runtime)
    found += _said(lambda: check_precision(cfg.precision.name, cfg.runtime.name))
    if uses_weights(cfg):
        found += _said(lambda: weights.resolve(cfg.model))
    elif cfg.model.onnx and not Path(cfg.model.onnx).expanduser().is_file():
        found.append(f"model.onnx={cfg.model.onnx}: no such file")
    elif cfg.model.onnx and Path(cfg.model.onnx).expanduser().stat().st_size == 0:
        found.append(f"model.onnx={cfg.model.onnx} is empty: an interrupted export or copy? Export it again")
    return found


def uses_weights(cfg: Config) -> bool:
    """Whether the run reads the model's weights: a runtime of the framework model, or one of an ONNX evalkit
    exports (no ``model.onnx``); a device's dumps read neither."""
    model_from = getattr(runtime_module(cfg.runtime.name), "MODEL_FROM", "onnx")
    return model_from == "weights" or (model_from == "onnx" and not cfg.model.onnx)


def _said(check: Any) -> list[str]:
    """The UserError ``check()`` raises, as a list of its message (empty when it passes)."""
    try:
        check()
    except UserError as e:
        return [str(e)]
    return []


def refuse(found: list[str] | dict[str, list[str]], points: int = 1) -> None:
    """Raise one UserError listing every problem; ``found`` maps each to the sweep points it affects (of
    ``points``), or is the list of one run's."""
    if not found:
        return
    if isinstance(found, list):
        found = {problem: [] for problem in found}
    if len(found) == 1 and points == 1:
        raise UserError(next(iter(found)))
    lines = []
    for problem, where in found.items():
        shown = "" if not where else " [every point]" if len(where) == points > 1 else f" [{'; '.join(where)}]"
        lines.append(f"  - {problem}{shown}")
    raise UserError(f"{len(lines)} prerequisites missing; nothing was run:\n" + "\n".join(lines))


def sweep_points(config: DictConfig) -> list[list[str]]:
    """The overrides of each point of a sweep, as Hydra's basic sweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [point for batch in BasicSweeper.split_arguments(overrides, None) for point in batch]


def check_sweep(points: list[list[str]], compose: Any) -> dict[int, list[str]]:
    """Compose every point (``compose(overrides) -> DictConfig``): point number -> what it lacks (empty: ready)."""
    found: dict[int, list[str]] = {}
    datasets_seen: dict[str, list[str]] = {}
    for number, overrides in enumerate(points):
        try:
            composed = compose(overrides)
            follow_overrides(composed, overrides, compose)
            cfg = to_object(composed)
        except UserError as e:
            found[number] = [str(e)]
            continue
        key = repr(cfg.dataset)
        if key not in datasets_seen:
            datasets_seen[key] = _said(lambda: datasets.load(cfg.dataset))
        found[number] = problems(cfg) + datasets_seen[key]
    return found


def refuse_sweep(points: list[list[str]], found: dict[int, list[str]]) -> None:
    """One UserError listing each problem once, with the points it stops (named by what varies in the sweep)."""
    by_problem: dict[str, list[str]] = OrderedDict()
    for number, said in found.items():
        for problem in said:
            by_problem.setdefault(problem, []).append(history.point_label(dict(enumerate(points)), number))
    refuse(by_problem, len(points))


class CallbackFailed(BaseException):
    """A bug in the sweep's preflight, carried past Hydra's callback wrapper (which catches ``Exception``)."""


class Preflight(Callback):
    """Hydra callback (``hydra.callbacks.preflight`` in conf/config.yaml): checks every point of a sweep before
    the launcher starts one. Hydra turns a callback's exception into a warning, so a refusal exits here (one
    message, exit code 2), as any user error does."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._check(config)
        except Exception as e:  # Hydra would turn a bug here into a warning and run the sweep unchecked
            raise CallbackFailed(e) from e

    @staticmethod
    def _check(config: DictConfig) -> None:
        """Record the sweep's points before any runs (the gate names a point that never ran, whatever the launcher),
        then check them; a refused point is recorded as failed with its first problem."""
        points = sweep_points(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        found = check_sweep(points, job_compose(config.hydra.overrides.hydra))
        refused = any(found.values())
        # evalkit's SLURM launcher records its points itself, with their jobs (and finds them again on resume=true)
        if refused or "SlurmLauncher" not in str(OmegaConf.select(config, "hydra.launcher._target_")):
            history.plan_sweep(sweep_dir, dict(enumerate(points)), {})
        for number, said in found.items():
            if said:
                history.point_failed(sweep_dir, number, said[0])
        exit_on_user_error(lambda: refuse_sweep(points, found))
