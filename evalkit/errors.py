"""The one exception type for mistakes a user can fix (exit code 2)."""


class UserError(Exception):
    """Bad input: a message that names the problem and the fix; the CLI exits 2.

    Everything else that goes wrong is a bug and raises with its traceback.
    """
