"""A trained lego run resampled to a given grid, and the train step timed on it (shared by
train_throughput.py and scaling.py)."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.data.blender import load_blender
from tensorf.data.rays import RayPool
from tensorf.fields import vm
from tensorf.models.base import build_schedule
from tensorf.parallel import make_mesh, replicate
from tensorf.run import restore_run
from tensorf.training.trainer import filter_pool, measure_budgets
from tensorf.training.optimizer import lrs_at, make_optimizer
from tensorf.training.step import initial_loss_scale, initial_totals, make_train_step


@dataclasses.dataclass
class LegoState:
    cfg: object
    model: object
    schedule: object
    params: dict
    meta: dict
    pool: RayPool
    tx: object


def load(run_dir: Path, dataset_path: Path, batch: int, max_samples: int) -> LegoState:
    """The run's field, box and config (batch and sample cap overridden) and the lego training
    rays that cross its box."""
    cfg, model, params, meta = restore_run(run_dir)
    cfg = dataclasses.replace(cfg, batch_size=batch, model=dataclasses.replace(cfg.model, max_samples=max_samples))
    model = dataclasses.replace(model, config=cfg.model)
    schedule = build_schedule(model)
    pool = jax.device_put(RayPool.from_views(load_blender(dataset_path, "train", cfg.data.downscale)))
    pool = filter_pool(schedule, params, {**meta["model_state"], "mask_updates": 0}, pool)
    return LegoState(cfg, model, schedule, params, meta, pool, make_optimizer(model, cfg.optim))


def at_grid(s: LegoState, grid: int, shards: int = 1):
    """(resolution, params without a mask, params with the mask rebuilt there, state, budgets
    measured on batches of batch / shards rays) at grid^3 voxels in the run's box."""
    res = vm.voxels_to_resolution(grid**3, np.asarray(s.params["aabb"]))
    p = {**s.schedule.resize(s.params, res), "occupancy": jnp.ones((1, 1, 1))}
    state = {**s.meta["model_state"], "resolution": list(res)}
    p_mask, state = s.schedule.update_mask(p, state)  # from the field alone, as a first update would
    budgets = measure_budgets(s.cfg, s.schedule, p_mask, s.pool, 0, shards=shards)
    return res, p, p_mask, state, budgets


def time_step(s: LegoState, model, params, steps: int, devices: int = 1, loss_scaling: bool = False) -> float:
    """Median seconds of the jitted train step (batch drawn on the device, as in training) over
    `steps` steps, one at a time (see step_timings)."""
    return step_timings(s.cfg, s.tx, model, params, s.pool, steps, devices, loss_scaling)["ms"] / 1000


def step_timings(cfg, tx, model, params, pool, steps: int, devices: int = 1, loss_scaling: bool = False,
                 trace: Path | None = None) -> dict:
    """The jitted train step timed on batches drawn from `pool`: compile_s (ahead of time), ms
    (median over `steps` steps, each waited for, after two warm-up steps), queued_ms (mean over
    `steps` more dispatched back to back, as the training loop runs them) and the last loss.
    With `trace`, `steps` more queued steps are recorded there by JAX's profiler (the step's
    programs one by one: benchmarks/trace_summary.py)."""
    mesh = make_mesh(devices, cfg.batch_size)
    fn = make_train_step(model, tx, functools.partial(lrs_at, cfg), cfg.batch_size, mesh)
    prm = jax.tree.map(jnp.array, params)  # the step donates its inputs on accelerators
    state = list(replicate(mesh, (prm, tx.init(prm), initial_totals(), initial_loss_scale() if loss_scaling else None, None)))
    pool, key, count = replicate(mesh, (pool, jax.random.key(0), np.int32(0)))
    t0 = time.perf_counter()
    step = fn.lower(*state, pool, count, None, key).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        *state, count, stats = step(*state, pool, count, None, key)
        jax.block_until_ready(stats)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(steps):
        *state, count, stats = step(*state, pool, count, None, key)
    jax.block_until_ready((state, stats))
    queued_ms = 1000 * (time.perf_counter() - t0) / steps
    if trace is not None:
        with jax.profiler.trace(str(trace), create_perfetto_trace=True):
            for _ in range(steps):
                *state, count, stats = step(*state, pool, count, None, key)
            jax.block_until_ready((state, stats))
    return {"compile_s": compile_s, "ms": 1000 * float(np.median(times[2:])), "queued_ms": queued_ms,
            "loss": float(stats["loss"])}
