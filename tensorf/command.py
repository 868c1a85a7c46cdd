"""How every command that trains, renders or judges starts: glibc's malloc set to keep freed
memory (tensorf.host_memory), compiled programs cached on disk (tensorf.xla_cache), its
arguments read by tyro and checked against their ranges (tensorf.option_ranges), and a
UserError printed as one `error:` line with exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import tyro

from tensorf import option_ranges
from tensorf.errors import exit_on_user_error
from tensorf.host_memory import keep_freed_memory
from tensorf.xla_cache import use_persistent_cache

Args = TypeVar("Args")
Result = TypeVar("Result")


def run(entry: Callable[[Args], Result], args_type: type[Args], argv: list[str] | None = None) -> Result:
    """entry(the arguments parsed from argv, or from the command line when None)."""
    keep_freed_memory()
    use_persistent_cache()
    with exit_on_user_error():
        args = tyro.cli(args_type, args=sys.argv[1:] if argv is None else argv)
        option_ranges.check(args)
        return entry(args)
