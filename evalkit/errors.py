"""The one exception type for mistakes a user can fix (exit code 2), and the range check that raises it."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a message that names the problem and the fix; the CLI exits 2.

    Everything else that goes wrong is a bug and raises with its traceback.
    """


def at_least(key: str, value: float | None, minimum: float) -> None:
    """Reject a setting out of range before any work starts (None means unset)."""
    if value is not None and value < minimum:
        raise UserError(f"{key}={value} is out of range: must be >= {minimum}")
