"""``python -m evalkit``: one model, one recipe, one runtime, one dataset -> one run record.

    python -m evalkit                                   # the embedded demo
    python -m evalkit model=cspresnext50 runtime=ort dataset=imagefolder dataset.root=/data/imagenet/val
"""

from __future__ import annotations

import gc
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from evalkit import history
from evalkit.commands import exit_on_user_error, print_help_if_asked, refuse_timm_flags, stop_on_sigterm
from evalkit.config import Config, follow_overrides, job_compose, register, to_object
from evalkit.errors import UserError
from evalkit.run import evaluate
from evalkit.workers import die_with_parent


def _typed(cfg: DictConfig) -> Config:
    """The job's config, less what its model entry set for another recipe family or architecture."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    follow_overrides(cfg, list(hydra_cfg.overrides.task), job_compose(hydra_cfg.overrides.hydra))
    return to_object(cfg)


def _task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        if "joblib" in str(hydra_cfg.launcher.get("_target_", "")):
            # This job runs in a joblib (loky) worker process of the sweep: it ends with the sweep, even one killed.
            die_with_parent()
        # In a sweep the launcher collects each job's error and the sweep fails at the end (exit 2).
        sweep_dir = Path(hydra_cfg.sweep.dir)
        try:
            run_dir = evaluate(_typed(cfg), sweep=sweep_dir.name)
        except Exception as e:  # what the gate names for this point; the launcher reports the error itself
            history.point_failed(sweep_dir, hydra_cfg.job.num, f"{type(e).__name__}: {e}" if not isinstance(
                e, UserError) else str(e))
            raise
        # what the gate and resume=true go by: this point of the sweep has its run
        history.point_done(sweep_dir, hydra_cfg.job.num, run_dir)
    else:
        # Exit here, inside the job: an exception would make Hydra print its own error line first.
        exit_on_user_error(lambda: evaluate(_typed(cfg)))


def refuse_shell_expanded_braces(args: list[str]) -> None:
    """A key given several values that differ only in a zero-padded number is a UserError: that is what the shell
    makes of an unquoted brace pattern (``dataset.shards=/x-{000000..000063}.tar``), and Hydra, whose rule is that
    the last value of a key wins, would run one shard. Any other repeated key follows Hydra's rule."""
    values: dict[str, list[str]] = {}
    for arg in args:
        if "=" in arg and not arg.startswith("-"):
            key, value = arg.split("=", 1)
            values.setdefault(key.lstrip("+~"), []).append(value)
    for key, given in values.items():
        if len(set(given)) > 1 and _differ_in_a_padded_number(given):
            raise UserError(f"{key} is given {len(given)} values that differ only in a zero-padded number: the shell "
                            f"expanded a brace pattern. Quote the whole override, e.g. "
                            f"'{key}=\"/data/imagenet-val-{{000000..000063}}.tar\"'")


def _differ_in_a_padded_number(values: list[str]) -> bool:
    """Whether the values are one text with one number in it, of one width, written with leading zeros."""
    split = [re.split(r"(\d+)", v) for v in values]
    if len({len(parts) for parts in split}) != 1:
        return False
    differing = {i for parts in split for i, part in enumerate(parts) if part != split[0][i]}
    if len(differing) != 1:
        return False
    (at,) = differing
    numbers = [parts[at] for parts in split]
    return len({len(n) for n in numbers}) == 1 and len(numbers[0]) > 1 and any(n.startswith("0") for n in numbers)


def launch(app: Callable[[], Any]) -> Any:
    """Run the Hydra app; a job the scheduler refuses (submitit's FailedJobError: sbatch said no) is a UserError.

    Matched by name so that evalkit without submitit imports nothing of it.
    """
    try:
        return app()
    except Exception as e:
        if type(e).__name__ != "FailedJobError" or not type(e).__module__.startswith("submitit"):
            raise
        lines = str(e).splitlines()
        said = next((line.strip() for line in lines if "sbatch: error" in line), lines[0] if lines else "")
        advice = ""
        if "gres" in said:
            advice = (" hydra/launcher=slurm asks for hydra.launcher.gpus_per_node GPUs; on a cluster without GPUs "
                      "use hydra/launcher=slurm_cpu")
        elif "dns_srv" in said:  # no slurm.conf where sbatch looks, so it asked DNS for the controller
            advice = " sbatch found no slurm.conf: run it on a login node of the cluster, or export SLURM_CONF=PATH"
        raise UserError(f"SLURM refused the job: {said}.{advice}") from e


def register_launcher() -> None:
    """evalkit's SLURM launcher (``hydra/launcher=slurm|slurm_cpu``), where ``evalkit[slurm]`` is installed (the
    module defines it only then). Hydra finds plugins by listing the ``hydra_plugins`` folders, which an editable
    install of evalkit does not show, so the class is registered here too."""
    from hydra_plugins import evalkit as plugin

    if hasattr(plugin, "SlurmLauncher"):
        from hydra.core.plugins import Plugins

        Plugins.instance().register(plugin.SlurmLauncher)


def main() -> None:
    # Let composition errors reach exit_on_user_error instead of Hydra's own exit code 1.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    stop_on_sigterm()
    exit_on_user_error(lambda: refuse_timm_flags(sys.argv[1:]))
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        from evalkit.usage import main_help

        print_help_if_asked(sys.argv[1:], main_help())
    exit_on_user_error(lambda: refuse_shell_expanded_braces(sys.argv[1:]))
    register()
    register_launcher()
    import hydra

    app = hydra.main(version_base=None, config_path="pkg://evalkit.conf", config_name="config")(_task)
    exit_on_user_error(lambda: launch(app))
    # Nothing is collected from here on: the interpreter's exit skips walking every object of the imported
    # modules (pandas, hydra, onnxruntime: ~0.1 s of the run's wall time)
    gc.freeze()
