"""Deliberate crashes, for the crash-safety tests: with TENSORF_KILL_AT="<point>:<step>" the
training process SIGKILLs itself when it reaches that point at that step. Points: "step" (a step
has just been queued), "save" (a checkpoint is being written in the background), "event" (a
schedule event has changed the parameters, before the ray pool and optimizer follow)."""

from __future__ import annotations

import os
import signal

ENV = "TENSORF_KILL_AT"


def crash_point(point: str, step: int) -> None:
    if os.environ.get(ENV) == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
