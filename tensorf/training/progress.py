"""What the training loop keeps beside the step: its clock (one clock for every process), the
quality curve (PSNR against training time) and the best checkpoint (--keep-best)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from tensorf.checkpoint import Checkpointer
from tensorf.config import TrainConfig
from tensorf.eval import evaluate_views
from tensorf.training.step import undonated
from tensorf.training.trainer import Trainer


class TrainingClock:
    """Seconds of training so far: a resumed run's earlier seconds included, paused ones not.

    With several processes each must read the same time, or their schedules (--time-budget-
    minutes) and stops (--stop-after-minutes) part ways and their collectives hang. There the
    time is process 0's, broadcast at every sync (the log steps, which wait for the device
    anyway) and held between syncs: a stop is decided at most one log interval late."""

    def __init__(self, elapsed0: float, shared: bool):
        self._start = time.perf_counter() - elapsed0
        self._shared = shared
        self._held = elapsed0

    def pause(self, seconds: float) -> None:
        self._start += seconds

    def elapsed(self) -> float:
        return self._held if self._shared else time.perf_counter() - self._start

    def sync(self) -> None:
        if self._shared:
            now = np.float32(time.perf_counter() - self._start)
            self._held = float(multihost_utils.broadcast_one_to_all(now))


class QualityCurve:
    """PSNR against training time (--quality-every-s): at each point the queued steps are waited
    for, the clock read, a few eval views rendered, and the render's time taken off the clock."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, primary: bool):
        self.count = cfg.quality_views
        self.every, self.chunk = cfg.quality_every_s, cfg.render_chunk
        self.path = run_dir / "eval" / "quality.json" if primary else None
        self.next_s = 0.0
        self.points: list[tuple[float, int, float]] = []

    def measure(self, t: "Trainer", clock: "TrainingClock", views, mesh, writer) -> None:
        """Measure on the first few of `views` (the eval views)."""
        jax.block_until_ready(t.params)
        seconds = clock.elapsed()
        t0 = time.perf_counter()
        views = views.subset(range(min(self.count, len(views.names))))
        psnr = evaluate_views(t.model, t.params, views, Path("."), "quality", self.chunk, verbose=False,
                              mesh=mesh, write=False, with_lpips=False)["psnr"]
        clock.pause(time.perf_counter() - t0)
        self.points.append((round(seconds, 3), t.step, psnr))
        self.next_s = seconds + self.every
        writer.add_scalar("eval/psnr_by_time", psnr, t.step)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"seconds_step_psnr": self.points}))


class BestKeeper:
    """RUN/best: the checkpoint whose eval views scored the best mean PSNR so far (--keep-best)."""

    def __init__(self, run_dir: Path, resume: bool):
        self.checkpoints = Checkpointer(run_dir, keep=1, folder="best")
        step = self.checkpoints.latest_step() if resume else None
        self.psnr = -math.inf if step is None else float(self.checkpoints.meta(step)["val_psnr"])

    def consider(self, t: "Trainer", psnr: float) -> float:
        if psnr > self.psnr:
            self.psnr = psnr
            self.checkpoints.save(t.step, {"params": undonated(t.params)}, {"step": t.step, "model_state": t.mstate, "val_psnr": psnr})
        return psnr


