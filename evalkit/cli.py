"""``python -m evalkit``: one model, one recipe, one runtime, one dataset -> one run record.

    python -m evalkit                                   # the embedded demo
    python -m evalkit model=cspresnext50 runtime=ort dataset=imagefolder dataset.root=/data/imagenet/val
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from evalkit.config import register, to_object, unknown_key_message
from evalkit.errors import UserError
from evalkit.run import evaluate
from evalkit.workers import die_with_parent


class Terminated(KeyboardInterrupt):
    """SIGTERM, as batch schedulers send before SIGKILL: stopped like Ctrl-C (checkpoint kept), exit 143."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def exit_on_user_error(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a user error or a config error is one message on stderr and exit code 2.

    Ctrl-C stops with exit code 130, SIGTERM with 143 (once ``main`` handles it), and both say how to continue.
    """
    try:
        return fn()
    except UserError as e:
        print(f"evalkit: error: {e}", file=sys.stderr)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"evalkit: config error: {config_error_message(e)}", file=sys.stderr)
    except KeyboardInterrupt as e:
        print(f"evalkit: {'terminated' if isinstance(e, Terminated) else 'interrupted'}; the images scored so far "
              "are kept: run the same command with resume=true to finish the rest", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    sys.exit(2)


def config_error_message(e: BaseException) -> str:
    """A key the schema lacks: its closest keys instead of Hydra's advice to append it with ``+key``.

    The omegaconf error under Hydra's has the full key and the composed node that lacks it.
    """
    cause: BaseException | None = e
    while cause is not None:
        node = getattr(cause, "parent_node", None)
        missing_key = isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(node, DictConfig)
        if missing_key and cause.full_key and cause.key not in node:
            return unknown_key_message(cause.full_key, node.keys())
        cause = cause.__cause__
    return str(e)


def output_and_overrides(args: list[str], usage: str) -> tuple[Path, list[str]]:
    """Split ``output=PATH`` from the Hydra overrides of a helper command (export, inputs)."""
    outputs = [a.split("=", 1)[1] for a in args if a.startswith("output=")]
    if len(outputs) != 1:
        raise UserError(f"name the output: {usage}")
    return Path(outputs[0]), [a for a in args if not a.startswith("output=")]


def _task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        if "joblib" in str(hydra_cfg.launcher.get("_target_", "")):
            # This job runs in a joblib (loky) worker process of the sweep: it ends with the sweep, even one killed.
            die_with_parent()
        # In a sweep the launcher collects each job's error and the sweep fails at the end (exit 2).
        evaluate(to_object(cfg), sweep=Path(hydra_cfg.sweep.dir).name)
    else:
        # Exit here, inside the job: an exception would make Hydra print its own error line first.
        exit_on_user_error(lambda: evaluate(to_object(cfg)))


def main() -> None:
    # Let composition errors reach exit_on_user_error instead of Hydra's own exit code 1.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    signal.signal(signal.SIGTERM, _terminate)
    register()
    import hydra

    app = hydra.main(version_base=None, config_path="pkg://evalkit.conf", config_name="config")(_task)
    exit_on_user_error(app)
