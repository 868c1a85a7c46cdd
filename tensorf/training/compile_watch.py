"""Which XLA compiles the training loop waited for: backend compiles on the loop's own thread
(those on the compile-ahead thread cost it nothing), named, from JAX's monitoring events."""

from __future__ import annotations

import threading

import jax

# jax._src.dispatch.BACKEND_COMPILE_EVENT: recorded around every backend compile (a persistent
# cache hit included), in the thread that compiles, with the program's name.
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


class CompileWatch:
    """Collects (program name, seconds) of the compiles run on the thread that made it, until
    closed. take() hands over those since the last take()."""

    def __init__(self):
        self._thread = threading.get_ident()
        self._seen: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, seconds: float, **kwargs) -> None:
        if event == _BACKEND_COMPILE and threading.get_ident() == self._thread:
            with self._lock:
                self._seen.append((str(kwargs.get("fun_name", "?")), float(seconds)))

    def take(self) -> list[tuple[str, float]]:
        with self._lock:
            seen, self._seen = self._seen, []
        return seen

    def close(self) -> None:
        try:
            jax.monitoring.unregister_event_duration_listener(self._on_event)
        except (AssertionError, ValueError):  # already closed
            pass


def summary(compiles: list[tuple[str, float]]) -> str:
    """'1.2 s: step 1.0, _resample 0.2' (the slowest first), or '0.0 s'."""
    total = sum(s for _, s in compiles)
    if not compiles:
        return "0.0 s"
    by_name: dict[str, float] = {}
    for name, s in compiles:
        by_name[name] = by_name.get(name, 0.0) + s
    names = ", ".join(f"{n} {s:.1f}" for n, s in sorted(by_name.items(), key=lambda kv: -kv[1]))
    return f"{total:.1f} s: {names}"
