"""The one exception type for mistakes a user can fix (exit code 2), and the range check that raises it."""

from __future__ import annotations

import math
import sys


class UserError(Exception):
    """Bad input: a message that names the problem and the fix; the CLI exits 2.

    Everything else that goes wrong is a bug and raises with its traceback.
    """


def at_least(key: str, value: float | None, minimum: float) -> None:
    """Reject a setting out of range, or not a finite number, before any work starts (None means unset)."""
    if value is not None and not math.isfinite(value):
        raise UserError(f"{key}={value} is not a finite number")
    if value is not None and value < minimum:
        raise UserError(f"{key}={value} is out of range: must be >= {minimum}")


def capped(key: str, value: int, cores: int) -> int:
    """A count of processes or threads beyond the cores this process may use is lowered to them, saying so:
    more only contend for the same cores (and a worker per image could exhaust memory)."""
    if value > cores:
        print(f"WARNING: {key}={value} is more than the {cores} cores this process may use; using {cores}",
              file=sys.stderr)
        return cores
    return value
