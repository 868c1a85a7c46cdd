"""What a model's schedule says of its next event before it comes (Schedule.ahead), so that
the training loop can compile the event's programs and the step after it while training goes on."""

from __future__ import annotations

from typing import Any, NamedTuple


class Ahead(NamedTuple):
    params: Any
    """The params' shapes after the event (jax.ShapeDtypeStruct leaves); None when they depend on
    what the field holds at the event (then only `programs` are known)."""
    state: dict | None
    """The model state after it (budgets aside: those are measured after the event), or None."""
    events: frozenset
    """What advance will return for it: "resize", "mask"."""
    programs: tuple
    """(jitted function, arguments) pairs that the event and the budgets' measurement after it
    run. Arguments standing for the params are shapes (jax.ShapeDtypeStruct leaves, placed like
    the params when compiled); the rest are the arrays the call will pass, or their shapes."""
