"""The Hydra launcher of ``hydra/launcher=slurm`` and ``slurm_cpu``: the submitit plugin's, plus what a nightly on a
shared cluster needs. Hydra knows it as ``hydra_plugins.evalkit.SlurmLauncher``; it needs ``evalkit[slurm]``.

- Every point's outcome is collected: the plugin's launcher stops at the first job that was cancelled, timed out or
  failed, with a submitit traceback, and never reports the others. Here the sweep ends with one message naming each
  such point (its overrides) and its SLURM job.
- The sweep's points and their jobs are recorded (``history.plan_sweep``), so the gate names a point without a run.
- ``resume=true`` on the same command continues the latest sweep of the same points: the points whose run landed are
  skipped, the others run again into that sweep (and, through ``resume=true``, continue their saved images).
- Ctrl-C or SIGTERM of the sweep cancels its jobs: none runs on after the command that started it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as PluginLauncher
from omegaconf import OmegaConf

from evalkit import history
from evalkit.errors import UserError

log = logging.getLogger(__name__)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _outcome(job: Any) -> JobReturn | str:
    """The point's JobReturn, or why its job ended without one: its SLURM state (CANCELLED, TIMEOUT, ...)."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    job.wait()
    # checked first: submitit's results() waits 15 s for a result file a cancelled job never writes
    if not job.paths.result_pickle.exists() and job.state != "COMPLETED":
        return f"ended {job.state.split()[0]}"  # "CANCELLED by 0": the uid is noise
    try:
        return job.results()[0]
    except (UncompletedJobError, FailedJobError):  # it ended, or raised, outside the evaluation
        return "failed outside the evaluation"


def _failure(outcome: JobReturn | str) -> str | None:
    if isinstance(outcome, str):
        return outcome
    if outcome.status == JobStatus.FAILED:
        e = outcome._return_value
        return f"failed: {e}" if isinstance(e, UserError) else f"failed: {type(e).__name__}: {e}"
    return None


class SlurmLauncher(PluginLauncher):
    """The plugin's SLURM launcher with the sweep's points recorded, every failed point named, and resume=true."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        here = Path(str(self.config.hydra.sweep.dir))
        # the sweep's identity: its points, resume=... aside (the command that resumes adds it)
        points = {initial_job_idx + i: [o for o in overrides if _key(o) != "resume"]
                  for i, overrides in enumerate(job_overrides)}
        sweep_dir, done = self._resumed(here, points) if self.config.get("resume") else (here, {})
        for n in sorted(done):
            print(f"point {n} ({history.point_label(points, n)}): already ran, run {done[n].name}; skipped")
        skipped = [JobReturn(overrides=points[n], status=JobStatus.COMPLETED) for n in done]
        todo = {n: list(job_overrides[n - initial_job_idx]) for n in points if n not in done}
        if not todo:
            print(f"all {len(points)} points of sweep {sweep_dir.name} already ran; nothing to submit")
            return skipped
        jobs = self._submit(todo, sweep_dir, here)
        history.plan_sweep(sweep_dir, points, {n: job.job_id for n, job in zip(todo, jobs)})
        outcomes = self._wait(jobs)
        failed = [f"point {n} ({history.point_label(points, n)}): SLURM job {job.job_id} {why}, log {job.paths.stderr}"
                  for n, job, why in zip(todo, jobs, map(_failure, outcomes)) if why]
        if failed:
            raise UserError(f"{len(failed)} of {len(points)} sweep points did not complete: {'; '.join(failed)}. "
                            f"The runs that completed are kept; the same command with resume=true runs only the "
                            f"missing points (sweep {sweep_dir.name})")
        return [*outcomes, *skipped]

    @staticmethod
    def _resumed(here: Path, points: dict[int, list[str]]) -> tuple[Path, dict[int, Path]]:
        """The latest earlier sweep of the same points and its points that have a run; else this new sweep."""
        earlier = [s for s in history.planned_sweeps(here.parent) if s.points == points]
        if not earlier:
            print(f"resume=true: no earlier sweep in {here.parent} has these {len(points)} points; running all")
            return here, {}
        print(f"resume=true: continuing sweep {earlier[-1].id}")
        return earlier[-1].dir, earlier[-1].completed()

    def _submit(self, todo: dict[int, list[str]], sweep_dir: Path, here: Path) -> list[Any]:
        """One SLURM array job of the points in ``todo``, as the plugin submits it; into ``sweep_dir`` (logs too)
        when that is an earlier sweep being resumed."""
        import submitit

        params = dict(self.params)
        folder = Path(params.pop("submitit_folder"))
        moved = sweep_dir != here
        if moved and folder.is_relative_to(here):
            folder = sweep_dir / folder.relative_to(here)
        executor = submitit.AutoExecutor(cluster="slurm", folder=folder,
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
        # the job composes its config from its overrides: this one puts its run into the resumed sweep
        quoted = str(sweep_dir.resolve()).replace("'", "\\'")
        extra = [f"hydra.sweep.dir='{quoted}'"] if moved else []
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        for n, overrides in todo.items():
            log.info(f"\t#{n} : {' '.join(overrides)}")
        state = Singleton.get_state()
        return executor.map_array(self, *zip(*[(overrides + extra, "hydra.sweep.dir", n, f"job_id_for_{n}", state)
                                               for n, overrides in todo.items()]))

    @staticmethod
    def _wait(jobs: list[Any]) -> list[JobReturn | str]:
        """Every job's outcome; stopped (Ctrl-C, SIGTERM), the jobs still queued or running are cancelled."""
        try:
            return [_outcome(job) for job in jobs]
        except KeyboardInterrupt:
            for job in jobs:
                if not job.done():
                    job.cancel(check=False)
            raise
