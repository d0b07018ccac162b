"""What every command line of evalkit shares: user errors as one message and exit code 2, Ctrl-C and
SIGTERM as a clean stop, and the ``output=PATH`` argument of the helper commands.

The main command (``evalkit.cli``) and the helper commands (``python -m evalkit.gate``, ``.history``, ``.results``,
``.merge``, ``.compare``, ``.report``, ``.zoo``, ``.export``, ``.inputs``, ``.diverge``, ``.bisect``, ``.audit``) import this module; it imports nothing of
the core beyond ``evalkit.errors`` and ``evalkit.config``, so no command needs to import another (bisect
builds on diverge's sessions).
"""

from __future__ import annotations

import errno
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from evalkit.config import retired_option_message, unknown_choice_message, unknown_key_message
from evalkit.errors import UserError


class Terminated(KeyboardInterrupt):
    """SIGTERM, as batch schedulers send before SIGKILL: stopped like Ctrl-C (checkpoint kept), exit 143."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def stop_on_sigterm() -> None:
    """From now on SIGTERM stops the command as Ctrl-C does (the checkpoint is kept), with exit code 143."""
    signal.signal(signal.SIGTERM, _terminate)


def exit_on_user_error(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a user error or a config error is one message on stderr and exit code 2.

    Ctrl-C stops with exit code 130, SIGTERM with 143 (after ``stop_on_sigterm``), and both say how to continue.
    """
    try:
        return fn()
    except UserError as e:
        print(f"evalkit: error: {e}", file=sys.stderr)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"evalkit: config error: {config_error_message(e)}", file=sys.stderr)
    except OSError as e:  # after Hydra's: its MissingConfigException is an IOError too
        if e.errno not in ENVIRONMENT_ERRORS:
            raise
        print(f"evalkit: error: {environment_message(e)}", file=sys.stderr)
    except KeyboardInterrupt as e:
        print(f"evalkit: {'terminated' if isinstance(e, Terminated) else 'interrupted'}; the images scored so far "
              "are kept: run the same command with resume=true to finish the rest", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    sys.exit(2)


#: what the machine, not evalkit, refuses: a folder that cannot be written, a full disk, a name too long
ENVIRONMENT_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG}


def environment_message(e: OSError) -> str:
    """One line for an ``ENVIRONMENT_ERRORS`` error: the path, what the system said, and what to change."""
    name = str(e.filename or "")
    where = f"{name if len(name) <= 120 else name[:60] + '...' + name[-50:]}: " if name else ""
    fix = {errno.ENOSPC: "free some space or point results.dir / cache_dir elsewhere",
           errno.EDQUOT: "free some space or point results.dir / cache_dir elsewhere",
           errno.ENAMETOOLONG: "use a shorter path or name"}.get(
        e.errno, "choose a folder you can write (results.dir, cache_dir, EVALKIT_CACHE) or fix its permissions")
    return f"{where}{e.strerror or e}: {fix}"


def config_error_message(e: BaseException) -> str:
    """A key the schema lacks: its closest keys instead of Hydra's advice to append it with ``+key``; an unknown
    option: its closest real choices (Hydra's list has the ``*_schema`` entries and not the nested options); a removed
    option: what replaced it; tar shards' braces, which Hydra's grammar takes only quoted: the quoted form.

    The omegaconf error under Hydra's has the full key and the composed node that lacks it.
    """
    retired = retired_option_message(str(e))
    if retired:
        return retired
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and e.options is not None:
        return unknown_choice_message(e.missing_cfg_file)
    if isinstance(e, OverrideParseException):
        key, _, value = e.override.partition("=")
        if key == "dataset.shards" and "{" in value:
            return (f"{e.override}: Hydra reads braces as its own syntax; quote the pattern, and the whole "
                    f"argument for the shell: 'dataset.shards=\"{value}\"'")
    cause: BaseException | None = e
    while cause is not None:
        node = getattr(cause, "parent_node", None)
        missing_key = isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(node, DictConfig)
        if missing_key and cause.full_key and cause.key not in node:
            return unknown_key_message(cause.full_key, node.keys())
        cause = cause.__cause__
    return str(e)


#: timm's validate.py flags -> the evalkit override that says the same ({} is the flag's value; None: no value)
TIMM_FLAGS: dict[str, str | None] = {
    "--model": "model={}", "--data-dir": "dataset=imagefolder dataset.root={}", "--data_dir": "dataset=imagefolder "
    "dataset.root={}", "--data": "dataset=imagefolder dataset.root={}", "-b": "runtime.batch_size={}",
    "--batch-size": "runtime.batch_size={}", "--img-size": "preprocess.size={}", "--crop-pct": "preprocess.crop_pct={}",
    "--interpolation": "preprocess.interpolation={}", "--num-classes": "model.num_classes={}",
    "--checkpoint": "model.weights={}", "-j": "workers={}", "--workers": "workers={}", "--pretrained": None,
}


def refuse_timm_flags(args: list[str]) -> None:
    """timm's habit (``--model X``) is a UserError that writes the same as evalkit's Hydra overrides."""
    said, instead = [], []
    rest = iter(args)
    for arg in rest:
        flag, has_value, value = arg.partition("=")
        if flag not in TIMM_FLAGS:
            continue
        template = TIMM_FLAGS[flag]
        if template is not None and not has_value:
            value = next(rest, "VALUE")
        said.append(flag if template is None else f"{flag} {value}")
        if template is not None:
            instead.append(template.format(value))
    if said:
        pretrained = " (a model=NAME entry loads its pretrained weights)" if "--pretrained" in said else ""
        raise UserError(f"evalkit takes Hydra overrides: {' '.join(instead) or 'model=NAME'} (not {' '.join(said)})"
                        f"{pretrained}")


def print_help_if_asked(args: list[str], text: str) -> None:
    """``--help`` or ``-h``: print ``text`` and exit 0 (before Hydra's grammar, which would reject them)."""
    if "--help" in args or "-h" in args:
        print(text)
        sys.exit(0)


def examples(doc: str | None) -> str:
    """The command lines of a module docstring, for an argparse epilog."""
    lines = [line for line in (doc or "").splitlines() if line.strip().startswith("python -m evalkit")]
    return "examples:\n" + "\n".join(lines)


def output_and_overrides(args: list[str], usage: str) -> tuple[Path, list[str]]:
    """Split ``output=PATH`` from the Hydra overrides of a helper command (export, inputs)."""
    outputs = [a.split("=", 1)[1] for a in args if a.startswith("output=")]
    if len(outputs) != 1:
        raise UserError(f"name the output: {usage}")
    return Path(outputs[0]), [a for a in args if not a.startswith("output=")]


def own_keys(args: list[str], keys: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Split the command's own ``key=value`` arguments from the Hydra overrides."""
    own = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.split("=", 1)[0] in keys}
    return own, [a for a in args if a.split("=", 1)[0] not in keys]


def number(own: dict[str, str], key: str, default: float, kind: type = float) -> Any:
    """``own[key]`` as ``kind``; a value that is not one is a UserError."""
    try:
        return kind(own.get(key, default))
    except ValueError:
        raise UserError(f"{key}={own[key]} is not a{'n integer' if kind is int else ' number'}") from None
