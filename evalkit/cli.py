"""``python -m evalkit``: one model, one recipe, one runtime, one dataset -> one run record.

    python -m evalkit                                   # the embedded demo
    python -m evalkit model=cspresnext50 runtime=ort dataset=imagefolder dataset.root=/data/imagenet/val
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from evalkit.config import register, to_object
from evalkit.errors import UserError
from evalkit.run import evaluate


def exit_on_user_error(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a user error or a config error is one message on stderr and exit code 2.

    Ctrl-C stops with exit code 130 and says how to continue.
    """
    try:
        return fn()
    except UserError as e:
        print(f"evalkit: error: {e}", file=sys.stderr)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"evalkit: config error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("evalkit: interrupted; the images scored so far are kept: "
              "run the same command with resume=true to finish the rest", file=sys.stderr)
        sys.exit(130)
    sys.exit(2)


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
        # In a sweep the launcher collects each job's error and the sweep fails at the end (exit 2).
        evaluate(to_object(cfg), sweep=Path(hydra_cfg.sweep.dir).name)
    else:
        # Exit here, inside the job: an exception would make Hydra print its own error line first.
        exit_on_user_error(lambda: evaluate(to_object(cfg)))


def main() -> None:
    # Let composition errors reach exit_on_user_error instead of Hydra's own exit code 1.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    register()
    import hydra

    app = hydra.main(version_base=None, config_path="pkg://conf", config_name="config")(_task)
    exit_on_user_error(app)
