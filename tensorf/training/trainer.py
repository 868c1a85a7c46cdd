"""The state training carries from step to step, and the schedule events that change its shapes:
the step compiled for each new grid (ahead of the event where it can be), the work budgets
measured for it, and the ray pool filtered by the field's box and mask.

The loop (loop.py) decides when; this decides how. A step's arrays stay on the device; the host
keeps the step count and the schedule state, and fetches scalars only at log steps.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import math
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tensorf import parallel
from tensorf.checkpoint import Checkpointer
from tensorf.config import TrainConfig
from tensorf.data.rays import RayPool, Rays
from tensorf.errors import UserError, warn
from tensorf.models.base import Model, Schedule
from tensorf.training import compile_watch
from tensorf.training.compile_watch import CompileWatch
from tensorf.training.crash_points import crash_point
from tensorf.training.optimizer import lrs_at
from tensorf.training.step import all_finite, initial_totals, make_train_step, undonated


def filter_pool(schedule: Schedule, params, mstate: dict, pool: RayPool) -> RayPool:
    """Drop the rays the model's ray filter rejects, on the device, keeping the pool's shapes."""
    keep = schedule.ray_filter(mstate)
    if keep is None:
        return pool
    kept = pool.filtered(keep, params)
    if int(kept.count) == 0:
        raise UserError(
            f"none of the {len(pool)} training rays crosses the scene box "
            f"{np.round(np.asarray(params['aabb'], np.float64), 3).tolist()} or its occupancy mask, so nothing could be "
            "learned; check the scene bounds (--data.aabb, --data.near-far) against the cameras, or lower "
            "--model.mask-threshold"
        )
    return kept


@functools.partial(jax.jit, static_argnums=3)
def _budget_batches(pool: RayPool, seed: np.int32, step: np.int32, size: int) -> list[Rays]:
    """The 8 batches budgets are measured on, drawn in one program (compiled ahead with the
    event's others: its arguments are numpy scalars, placed alike every time)."""
    return [pool.draw(k, size)[0] for k in jax.random.split(jax.random.fold_in(jax.random.key(seed), step), 8)]


def _budget_batches_args(cfg: TrainConfig, pool: RayPool, step: int, shards: int) -> tuple:
    return pool, np.int32(cfg.seed + 1), np.int32(step), cfg.batch_size // shards


def measure_budgets(cfg: TrainConfig, schedule: Schedule, params, pool: RayPool, step: int, at_least=None,
                    shards: int = 1) -> dict | None:
    """The model's work budgets, measured on a few batches drawn like the real ones, at the size
    each device renders (a shard of the batch): budgets are shares of a shard."""
    return schedule.budgets(params, _budget_batches(*_budget_batches_args(cfg, pool, step, shards)), at_least)


@dataclasses.dataclass
class Trainer:
    """What the loop carries from step to step. Everything a step reads is on the device; the
    host keeps the step count and the schedule state, and fetches scalars only at log steps."""

    cfg: TrainConfig
    model: Model
    schedule: Schedule
    tx: Any
    mesh: Mesh
    pool: RayPool
    writer: Any
    log: Any  # writes a line above the progress bar
    params: Any
    opt_state: Any
    mstate: dict
    step: int
    loss_scale: dict | None  # float16 compute only
    cams: dict | None  # per-view pose corrections and exposure maps, with their Adam states
    key: jax.Array
    totals: dict = dataclasses.field(default_factory=initial_totals)
    step_fn: Any = None
    step_on_device: Any = None
    compile_s: float = 0.0  # compiling the train step, all grid sizes together
    seen: dict = dataclasses.field(default_factory=lambda: {"dropped": 0.0, "nonfinite": 0})
    warned_drop: bool = False
    ahead: dict = dataclasses.field(default_factory=dict)  # step signature -> Future of its compiled step
    compiler: Any = None  # the thread that compiles ahead (--compile-ahead)
    compiles: list = dataclasses.field(default_factory=list)  # TrainResult.compiles
    measured: dict | None = None  # the budgets last measured (their headroom is measure_budgets')
    ahead_budgets: dict | None = None  # the budgets the step compiled ahead has
    tighter: tuple | None = None  # (Future of the step, its budgets): the measured budgets, compiling
    tightened: list = dataclasses.field(default_factory=list)  # TrainResult.tightened
    event_compiles: list = dataclasses.field(default_factory=list)  # TrainResult.event_compiles
    watch: CompileWatch = dataclasses.field(default_factory=CompileWatch)  # compiles on the loop's thread
    opt_init: Any = None  # the optimizer's init, jitted once (its programs are compiled ahead too)
    budget_rays: Any = None  # shapes of a batch the budgets are measured on (for Schedule.ahead)
    programs: list = dataclasses.field(default_factory=list)  # Futures of the next event's programs compiling
    queue: int | None = None  # steps queued at most before waiting for them (CPU_QUEUE); None: no limit

    def __post_init__(self):
        self.pool = parallel.replicate(self.mesh, self.pool)
        # By its raw data: a key array already on one device cannot be placed across processes.
        self.key = jax.random.wrap_key_data(parallel.replicate(self.mesh, np.asarray(jax.random.key_data(self.key))))
        self._place()
        self.model = self.model.for_state(self.mstate)
        self.opt_init = jax.jit(self.tx.init)  # one program, not an eager op per leaf
        if self.mesh.devices.flat[0].platform == "cpu" and len(self.mesh.local_devices) > 1:
            self.queue = CPU_QUEUE
        ahead = self.cfg.compile_ahead
        if ahead == "yes" or (ahead == "auto" and jax.default_backend() != "cpu"):
            self.compiler = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compile-ahead")
        self._compile()

    def _place(self) -> None:
        """The step's state replicated over the mesh (again after every reshape)."""
        self.params, self.opt_state, self.totals, self.loss_scale, self.cams, self.step_on_device = parallel.replicate(
            self.mesh, (self.params, self.opt_state, self.totals, self.loss_scale, self.cams, np.int32(self.step)))

    def _sched_arg(self, sched: float):
        """The schedule position the step reads: its own step count (None), or, with a time
        budget, the host clock's (the one scalar such a run sends per step)."""
        if self.cfg.time_budget_minutes is None:
            return None
        return parallel.replicate(self.mesh, np.float32(sched))

    def _make_step(self, model: Model):
        return make_train_step(model, self.tx, functools.partial(lrs_at, self.cfg), self.cfg.batch_size,
                               self.mesh, single_image=self.cfg.batching == "single_image",
                               background_warmup=self.cfg.data.turntable_warmup, camera_opt=self.cfg.camera_opt,
                               exposure_cfg=self.cfg.exposure)

    @staticmethod
    def _signature(params, opt_state, budgets) -> tuple:
        """What a compiled step is specific to: the shapes of the state it updates, and the work
        budgets (static in the model)."""
        def shapes(tree):
            return jax.tree.structure(tree), tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(tree))

        return shapes(params), shapes(opt_state), json.dumps(budgets, sort_keys=True)

    def _compile(self, tighter: dict | None = None) -> None:
        """Compile the step for the shapes in force, ahead of time and timed (train/compile_s:
        the time the loop waited for it). A step compiled ahead for these shapes (_compile_ahead)
        is taken instead, waiting for it if it is still compiling; when its budgets are wider than
        `tighter` (the event's measured ones), the step with those is then compiled beside
        training and swapped in by tighten(). A compiled step also refuses inputs of other shapes
        rather than silently retracing."""
        t0 = time.perf_counter()
        signature = self._signature(self.params, self.opt_state, self.mstate.get("budgets"))
        ahead, self.ahead, self.tighter = self.ahead.pop(signature, None), {}, None
        error = None if ahead is None else ahead.exception()
        if error is not None:
            warn(f"compiling the step ahead failed ({type(error).__name__}: {error}); compiling it at the event")
            ahead = None
        if ahead is not None:
            self.step_fn = ahead.result()
        else:
            args = (self.params, self.opt_state, self.totals, self.loss_scale, self.cams, self.pool,
                    self.step_on_device, self._sched_arg(0.0), self.key)
            self.step_fn = self._make_step(self.model).lower(*args).compile()
        dt = time.perf_counter() - t0
        self.compile_s += dt
        self.compiles.append((self.step, dt, ahead is not None))
        self.writer.add_scalar("train/compile_s", dt, self.step)
        self._compile_ahead()
        # After the next event's compiles: steps with wider budgets cost less than an event that
        # waits for its compile.
        if ahead is not None and tighter and tighter != self.mstate.get("budgets"):
            self.tighter = (self._submit(self.params, tighter)[1], tighter)

    def _submit(self, params, budgets: dict | None) -> tuple[tuple, concurrent.futures.Future]:
        """Start compiling, on the compiler thread, the step for params of these shapes (arrays or
        jax.ShapeDtypeStruct) and these budgets: shapes only, nothing is transferred or computed
        on the device. Returns the step's signature and the Future of the compiled step."""
        params = self._shapes(params)
        opt_state = self._shapes(jax.eval_shape(self.tx.init, params))
        rest = self._shapes((self.totals, self.loss_scale, self.cams, self.pool, self.step_on_device,
                             self._sched_arg(0.0), self.key))
        step = self._make_step(self.model.for_state({**self.mstate, "budgets": budgets}))
        return (self._signature(params, opt_state, budgets),
                self.compiler.submit(lambda: step.lower(params, opt_state, *rest).compile()))

    def _shapes(self, tree):
        """What a compile ahead is given for the arguments in `tree`: device arrays as their shapes
        on their own devices; shapes (the params after an event, their optimizer state) replicated
        over the mesh, where _place and apply_schedule put them; anything else (numpy arrays, static
        arguments) as it is."""
        replicated = NamedSharding(self.mesh, PartitionSpec())

        def shape(x):
            if isinstance(x, jax.ShapeDtypeStruct):
                return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated)
            if isinstance(x, jax.Array):
                return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
            return x

        return jax.tree.map(shape, tree)

    def _compile_ahead(self) -> None:
        """Start compiling, for the params the next schedule event will leave (Schedule.ahead),
        the event's own programs (alpha grid, resampling, ray filter, optimizer init, the budgets'
        measurement), then the step when those params' shapes are known (not for the box shrink).
        The step's budgets are the last measured ones grown by AHEAD_HEADROOM, so that the event's
        own measurement usually fits them (none before the first mask: every sample); tighten()
        narrows them after the event."""
        if self.compiler is None:
            return
        if self.budget_rays is None:  # the shapes of a batch budgets are measured on: fixed
            size = self.cfg.batch_size // self.mesh.size
            self.budget_rays = jax.eval_shape(lambda pool, key: pool.draw(key, size)[0], self.pool, self.key)
        ahead = self.schedule.ahead(self.params, self.mstate, self.budget_rays)
        if ahead is None:
            return
        programs = list(ahead.programs)
        known = ahead.params is not None
        keep = self.schedule.ray_filter(ahead.state) if known and "mask" in ahead.events else None
        if keep is not None:
            programs.append(self.pool.filter_program(keep, ahead.params))
        if known and "resize" in ahead.events:
            programs.append((self.opt_init, (ahead.params,)))
        programs.append((_budget_batches, _budget_batches_args(self.cfg, self.pool, self.step, self.mesh.size)))
        # Before the step: the event runs them first.
        self.programs = [self.compiler.submit(_compile_quietly, fn, self._shapes(args)) for fn, args in programs]
        if not known:
            return
        self.ahead_budgets = _grown(self.measured or self.mstate.get("budgets"), AHEAD_HEADROOM)  # resumed: saved ones
        signature, future = self._submit(ahead.params, self.ahead_budgets)
        self.ahead = {signature: future}

    def tighten(self) -> None:
        """Swap in the step with the budgets measured at the last event once it is compiled (with
        several processes: wait for it, so that all swap at the same step)."""
        if self.tighter is None or (not self.tighter[0].done() and jax.process_count() == 1):
            return
        (future, budgets), self.tighter = self.tighter, None
        try:
            step_fn = future.result()
        except Exception as error:  # noqa: BLE001 (the wider step compiled ahead runs on)
            warn(f"compiling the step with the measured budgets failed ({type(error).__name__}: {error}); "
                 f"keeping the budgets {self.mstate['budgets']}")
            return
        self.step_fn = step_fn
        self.mstate = {**self.mstate, "budgets": budgets}
        self.model = self.model.for_state(self.mstate)
        for name, share in budgets.items():
            self.writer.add_scalar(f"train/budget_{name}", share or 1.0, self.step)
        self.tightened.append((self.compiles[-1][0], self.step))
        self.log(f"step {self.step}: budgets {budgets}, as measured at step {self.compiles[-1][0]} (compiled beside "
                 "training)")

    def close(self) -> None:
        """Drop a compile nobody will use (training ended before its event)."""
        self.ahead, self.tighter, self.programs = {}, None, []
        self.watch.close()
        if self.compiler is not None:
            self.compiler.shutdown(wait=False, cancel_futures=True)

    def _measure(self, at_least=None) -> dict | None:
        self.measured = measure_budgets(self.cfg, self.schedule, self.params, self.pool, self.step, at_least,
                                        self.mesh.size)
        return self.measured

    def apply_schedule(self, sched: float) -> None:
        """Schedule events due by `sched`. The new state is always adopted (a skipped mask update
        still counts); after any event the budgets are measured again, since a new grid or mask
        changes how many samples are live. The event's time is logged by phase (train/event_s)."""
        clock = _PhaseClock()
        clock.lap("queued steps", self.params)  # steps dispatched but not yet run
        self.watch.take()  # compiles since the last event were not this one's
        if self.ahead:  # compiled for this event: wait for the compiles in flight rather than repeat them
            concurrent.futures.wait(self.programs)
            clock.lap("programs ahead", None)
        params, mstate, events = self.schedule.advance(self.params, self.mstate, int(sched))
        # Placed at once: the programs after this one were compiled ahead for replicated params.
        self.params, self.mstate = clock.lap("schedule", (parallel.replicate(self.mesh, params), mstate))
        if "empty" in events:
            events.discard("empty")
            self.log(self._empty_field_warning())
        if events:
            crash_point("event", self.step)
        if not events:
            return
        if "mask" in events:
            self.pool = parallel.replicate(self.mesh, filter_pool(self.schedule, self.params, self.mstate, self.pool))
            clock.lap("filter", self.pool)
            self.writer.add_scalar("train/ray_pool", len(self.pool), self.step)
        if "resize" in events:
            self.opt_state = self.opt_init(self.params)
        self._place()
        clock.lap("optimizer", self.opt_state)
        budgets = measured = clock.lap("budgets", self._measure())
        if budgets and self._ahead_fits(budgets):
            budgets = self.ahead_budgets  # the step compiled ahead has them: no compile on the event
        compiled = self.compile_s
        self._set_budgets(budgets, tighter=measured)
        clock.lap("compile", None)
        compiled_here = self.watch.take()
        self.event_compiles.append((self.step, sum(s for _, s in compiled_here), [n for n, _ in compiled_here]))
        self.writer.add_scalar("train/event_s", clock.total, self.step)
        self.writer.add_scalar("train/event_compile_s", self.event_compiles[-1][1], self.step)
        line = f"step {self.step}: {self.schedule.describe(self.params, self.mstate)}"
        if "mask" in events:
            line += f", {len(self.pool)} rays kept"
        if self.mstate["budgets"]:
            line += f", budgets {self.mstate['budgets']}"
        ahead = "" if self.compiler is None else ", compiled ahead" if self.compiles[-1][2] else ", not compiled ahead"
        self.log(line + f"; event {clock.total:.1f} s ({clock}; the step's compile {self.compile_s - compiled:.1f} s"
                 f"{ahead}; compiled on the loop's thread {compile_watch.summary(compiled_here)})")

    def _empty_field_warning(self) -> str:
        """A mask update found the field empty: say what that means and what usually causes it,
        since the run would otherwise go on quietly rendering the background alone."""
        c = self.cfg.model
        left = len(c.mask_update_steps) - self.mstate["mask_updates"]
        held = [f"--model.{name.replace('_', '-')} {value:g}" for name, value in
                (("tv_weight_density", c.tv_weight_density), ("l1_weight", c.l1_weight)) if value]
        return (f"warning: step {self.step}: the field is still empty (under 0.1% of the grid reaches opacity "
                f"{c.mask_threshold:g}), so the mask update is skipped"
                + (f" ({left} left)" if left else " (it was the last: the run will render the background alone)")
                + "; usual causes: too few steps before it (a short --steps or --time-budget-minutes compresses "
                + "the schedule), regularisers that hold the density at zero" + (f" ({', '.join(held)})" if held else "")
                + ", or a scene box that misses what the cameras see (--data.aabb)")

    def _ahead_fits(self, measured: dict) -> bool:
        """Whether a step compiled ahead has the shapes in force and budgets no smaller than the
        measured ones. Before the first mask it was compiled without budgets (every sample: the
        first budgets are not known before), which fits any."""
        signature = self._signature(self.params, self.opt_state, self.ahead_budgets)
        return signature in self.ahead and _within(measured, self.ahead_budgets or {})

    def _set_budgets(self, budgets: dict | None, tighter: dict | None = None) -> None:
        self.mstate = {**self.mstate, "budgets": budgets}
        for name, share in (budgets or {}).items():
            self.writer.add_scalar(f"train/budget_{name}", share or 1.0, self.step)
        self.model = self.model.for_state(self.mstate)
        self._compile(tighter)

    def train_step(self, sched: float) -> dict:
        """One step; no host transfer unless the schedule runs on the clock (see _sched_arg)."""
        (self.params, self.opt_state, self.totals, self.loss_scale, self.cams, self.step_on_device,
         stats) = self.step_fn(self.params, self.opt_state, self.totals, self.loss_scale, self.cams, self.pool,
                               self.step_on_device, self._sched_arg(sched), self.key)
        self.step += 1
        if self.queue is not None and self.step % self.queue == 0:
            jax.block_until_ready(stats)
        return stats

    def check(self, stats: dict) -> dict:
        """Fetch the step's scalars and the running totals (the one host transfer between logs);
        stop on a non-finite loss; on samples dropped by a work budget, warn once and measure the
        budgets again (no smaller than before)."""
        host = jax.device_get({**stats, **{f"total_{k}": v for k, v in self.totals.items()},
                               "loss_scale": None if self.loss_scale is None else self.loss_scale["scale"]})
        loss = float(host["loss"])
        if not math.isfinite(loss) or host["total_nonfinite"] > self.seen["nonfinite"]:
            raise UserError(
                f"loss became {loss if not math.isfinite(loss) else 'non-finite'} at step {self.step}; lower "
                f"--optim.lr-grid / --optim.lr-mlp or resume from the last good checkpoint in {self.cfg.run_dir}"
            )
        host["dropped"] = float(host["total_dropped"]) - self.seen["dropped"]
        self.seen = {"dropped": float(host["total_dropped"]), "nonfinite": int(host["total_nonfinite"])}
        if host["dropped"] > 0:
            if not self.warned_drop:
                warn(
                    f"step {self.step}: the work budgets {self.mstate['budgets']} left out {host['dropped']:.0f} live "
                    "samples since the last log; measuring them again (train/dropped in TensorBoard counts any more)"
                )
                self.warned_drop = True
            self._set_budgets(self._measure(at_least=self.mstate["budgets"]))
        return host

    def save(self, ckpt: Checkpointer, elapsed: float) -> None:
        """Start writing a checkpoint (orbax writes it in the background), never one holding
        non-finite parameters."""
        if not bool(all_finite(self.params)) or int(self.totals["nonfinite"]) > 0:
            raise UserError(
                f"parameters became non-finite by step {self.step}; no checkpoint written. Lower --optim.lr-grid / "
                f"--optim.lr-mlp or resume from the last good checkpoint in {ckpt.directory}"
            )
        meta = {"step": self.step, "model_state": self.mstate, "elapsed_s": elapsed}
        items = {"params": self.params, "opt_state": self.opt_state}
        if self.loss_scale is not None:
            items["loss_scale"] = self.loss_scale
        if self.cams is not None:
            items["cameras"] = self.cams
        ckpt.save(self.step, undonated(items), meta)
        crash_point("save", self.step)


# Over several CPU devices in one process, XLA's CPU client can abort a step's all-reduce ("only 3
# of 4 arrived", after 40 s) when many multi-device programs are queued, whether or not a compile
# runs beside them; a short queue never did (benchmarks/cpu_queue.py, its section in
# benchmarks/results.md). GPUs keep their queues unbounded: there the queue hides the host.
CPU_QUEUE = 8

# Budgets of a step compiled ahead, as a multiple of those last measured: an upsampling moves the
# measured shares by a few percent, a mask update by up to a third (tests/test_train.py's run:
# +1.4% and +18% density; on lego at 800x800 the second mask update outgrew 1.15, docs/gpu.md).
# Too little and the event waits for a compile; too much costs only the empty work slots of the
# steps before tighten() swaps in the measured budgets.
AHEAD_HEADROOM = 1.4


def _grown(budgets: dict | None, factor: float) -> dict | None:
    """Work budgets times factor, rounded up to 1/256 as measured ones are; None (no budget)
    where that reaches the whole batch."""
    if not budgets:
        return budgets
    grown = {k: None if b is None else math.ceil(b * factor * 256) / 256 for k, b in budgets.items()}
    return {k: None if b is None or b >= 1.0 else b for k, b in grown.items()}


def _within(measured: dict, carried: dict) -> bool:
    """Whether every work budget measured fits within the one carried over (None: no budget,
    every sample)."""
    share = lambda b: 1.0 if b is None else b  # noqa: E731
    return all(share(measured.get(k)) <= share(carried.get(k)) for k in set(measured) | set(carried))


class _PhaseClock:
    """Wall time of an event's phases, each measured once its results are on hand."""

    def __init__(self):
        self.t, self.phases = time.perf_counter(), {}

    def lap(self, name: str, result):
        jax.block_until_ready(result)
        now = time.perf_counter()
        self.phases[name] = now - self.t
        self.t = now
        return result

    @property
    def total(self) -> float:
        """The event's own time: the steps still queued when it began are training time."""
        return sum(v for k, v in self.phases.items() if k != "queued steps")

    def __str__(self) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in self.phases.items())


def _compile_quietly(fn, args) -> None:
    """Compile fn for args (on the compile-ahead thread). The result is kept by JAX's own caches,
    where the event's call finds it; a failure only means the event compiles it itself."""
    try:
        fn.lower(*args).compile()
    except Exception:  # noqa: BLE001 (the event's own call reports any real error)
        pass


