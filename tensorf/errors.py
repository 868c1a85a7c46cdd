"""One error type for bad user input; entry points print its message as a single line."""

from __future__ import annotations

import contextlib
import sys


class UserError(Exception):
    """A problem the user can fix (missing file, malformed input); the message names both."""


@contextlib.contextmanager
def exit_on_user_error():
    """Print a UserError as one line on stderr and exit with status 2 instead of a traceback."""
    try:
        yield
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def warn(message: str) -> None:
    """One `warning:` line on stderr: something the user should know that does not stop the run."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
