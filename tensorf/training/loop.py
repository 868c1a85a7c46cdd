"""The training loop: data in, steps queued, schedule events when due (trainer.py carries them
out), logging, checkpoints, the viewer and the final eval.

The side effects live here and in trainer.py; the step (step.py) and the model's render are pure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from tensorboardX import SummaryWriter
from tqdm import tqdm

from tensorf import option_ranges, parallel
from tensorf.checkpoint import Checkpointer
from tensorf.config import TrainConfig
from tensorf.data.dataset import ensure_generated, load_dataset
from tensorf.data.rays import RayPool
from tensorf.data.turntable import camera_background
from tensorf.errors import UserError
from tensorf.eval import evaluate_views, log_eval_view
from tensorf.metrics import mse_to_psnr
from tensorf.models.base import Model, build_model, build_schedule
from tensorf.run import (
    check_resumable,
    claim_run_dir,
    load_config,
    resolved_config,
    write_background,
    write_cameras,
    write_config,
    write_exposure,
    write_world,
)
from tensorf.training.cameras import camera_lr, carried_views, initial_cameras, refined_c2w
from tensorf.training.crash_points import crash_point
from tensorf.training.exposure import exposure_lr, initial_exposure, maps
from tensorf.training.optimizer import GROUPS, lrs_at, make_optimizer
from tensorf.training.progress import BestKeeper, QualityCurve, TrainingClock
from tensorf.training.step import initial_loss_scale
from tensorf.training.trainer import Trainer, filter_pool


@dataclasses.dataclass
class TrainResult:
    steps: int
    elapsed_s: float
    compile_s: float  # compiling the train step (included in elapsed_s)
    train_psnr: float
    rays_per_s: float  # over the last log window (0: no log step this session)
    eval_metrics: dict | None
    model: Model
    params: Any
    model_state: dict
    quality: list = dataclasses.field(default_factory=list)  # (training seconds, step, PSNR): --quality-every-s
    compiles: list = dataclasses.field(default_factory=list)  # (step, seconds the loop waited, compiled ahead)
    # (event step, seconds of XLA compiles on the loop's thread during the event, their names):
    # what was still compiled on the critical path, the step's compile included.
    event_compiles: list = dataclasses.field(default_factory=list)
    tightened: list = dataclasses.field(default_factory=list)  # (event step, step its measured budgets came in)


def schedule_step(cfg: TrainConfig, step: int, elapsed_s: float) -> float:
    """Where in the step schedule (upsampling, masks, decay) training stands. With a time budget
    the schedule is stretched over wall-clock time: a run that has used a fraction f of its
    budget is at f * steps, whatever its step count."""
    if cfg.time_budget_minutes is None:
        return float(step)
    return min(float(cfg.steps), cfg.steps * elapsed_s / (60.0 * cfg.time_budget_minutes))


class _NoWriter:
    """TensorBoard for the processes other than 0: they log nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def initial(model: Model, tx, key: jax.Array, state: dict) -> tuple[Any, Any]:
    """Fresh parameters and optimizer state, as one program: run eagerly, each of their few dozen
    small ops is a compile of its own, which on a GPU adds up to seconds before the first step."""
    return jax.jit(lambda k: (p := model.init(k, state), tx.init(p)))(key)


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train into cfg.run_dir, which this process locks (RUN/lock) for the run's duration. A
    directory that already holds a run is continued with resume, restarted with overwrite, and
    otherwise refused. Options out of range are refused before the directory is touched."""
    option_ranges.check(cfg)
    if Path(cfg.run_dir).resolve() == Path(cfg.data.path).resolve():
        # The run's files would mix with the capture's, and --overwrite deletes a transforms.json
        # and a colmap/ folder as exports of the run.
        raise UserError(f"--run-dir {cfg.run_dir} is the dataset folder (--data.path); give the run a folder of its "
                        f"own, e.g. --run-dir runs/{Path(cfg.data.path).resolve().name}")
    lock = claim_run_dir(Path(cfg.run_dir), resume, overwrite) if jax.process_index() == 0 else None
    try:
        with contextlib.ExitStack() as closing:  # the viewer, when one is open
            return _train(cfg, resume, closing)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, resume: bool, closing: contextlib.ExitStack) -> TrainResult:
    mesh = parallel.make_mesh(cfg.num_devices, cfg.batch_size)
    if jax.process_count() > 1:
        if cfg.viewer:
            raise UserError("--viewer does not work with --distributed (every process would have to render each "
                            "view); watch the run with python -m tensorf.viewer --run-dir RUN instead")
        if jax.process_index() == 0:
            ensure_generated(cfg.data)
        multihost_utils.sync_global_devices("dataset ready")
    data = load_dataset(cfg.data)
    auto = cfg.data.downscale == "auto"
    cfg = resolved_config(cfg, data.scene, kind=data.kind.kind if data.kind else None,
                          turntable=data.turntable.on if data.turntable else None, downscale=data.downscale)
    if jax.process_index() == 0 and data.format != "blender":
        print(data.describe(cfg.data.path))
    elif jax.process_index() == 0 and auto and data.downscale > 1:
        h, w = data.train.images.shape[1:3]
        print(f"{cfg.data.path}: images read at {w}x{h} (downscale {data.downscale}, --data.downscale auto)")
    model = build_model(cfg.model, data.scene)
    schedule = build_schedule(model)
    tx = make_optimizer(model, cfg.optim)
    init_key, train_key = jax.random.split(jax.random.key(cfg.seed))
    run_dir = Path(cfg.run_dir)

    ckpt = Checkpointer(run_dir, keep=cfg.keep_checkpoints)
    scaled = cfg.model.compute_dtype == "float16"  # bfloat16 has float32's range: no scaling
    refine, views = cfg.camera_opt.mode != "off", len(data.train.cameras)
    expose = cfg.exposure.mode != "off"

    def initial_corrections() -> dict:
        """The training views' learned corrections at the start: poses, exposures or both."""
        return {**(initial_cameras(views) if refine else {}), **(initial_exposure(views) if expose else {})}
    start, elapsed0 = 0, 0.0
    if resume and ckpt.latest_step() is not None:
        check_resumable(load_config(run_dir), cfg, run_dir)

        def template(meta):
            p, o = initial(model, tx, init_key, meta["model_state"])
            return {"params": p, "opt_state": o, **({"loss_scale": initial_loss_scale()} if scaled else {}),
                    **({"cameras": initial_corrections()} if refine or expose else {})}

        restored, meta = ckpt.restore(None, template)
        params, opt_state, mstate = restored["params"], restored["opt_state"], meta["model_state"]
        loss_scale, cams = restored.get("loss_scale"), restored.get("cameras")
        start, elapsed0 = int(meta["step"]), float(meta["elapsed_s"])
        ckpt.discard_after(start)
    else:
        if resume:
            print(f"no checkpoint in {run_dir}; starting from step 0")
        mstate = model.initial_state()
        params, opt_state = initial(model, tx, init_key, mstate)
        loss_scale = initial_loss_scale() if scaled else None
        cams = initial_corrections() if refine or expose else None
    primary = jax.process_index() == 0  # the one process that writes (checkpoints: orbax decides)
    if primary and start > 0 and start >= cfg.steps and cfg.time_budget_minutes is None:
        print(f"{run_dir} is at step {start}, which --steps {cfg.steps} does not pass: nothing to train (give more "
              "--steps to go on)", flush=True)
    if primary:
        write_config(cfg)
        write_cameras(run_dir, data.train.cameras, data.render_path, files=data.train.files, held_out=data.eval,
                      held_out_split=data.eval_split)
        write_world(run_dir, data.to_source)
        if data.train.background is not None:
            write_background(run_dir, camera_background(data.train.images))  # for novel cameras
    writer = SummaryWriter(str(run_dir / "tb")) if primary else _NoWriter()
    bar = tqdm(total=cfg.steps if cfg.time_budget_minutes is None else None, initial=start,
               disable=not (cfg.progress and primary), dynamic_ncols=True, unit="step")
    render_mesh = parallel.render_mesh()
    # The ray pool is a pure function of the field's box and mask, so a resumed run rebuilds it.
    pool = parallel.replicate(mesh, RayPool.from_views(data.train))
    # The pool holds the training pixels now, packed: the views' float32 copy is let go (lego at
    # 800x800: 768 MB of host memory), as nothing after this reads more of them than their cameras.
    train_cameras = data.train.cameras
    data = dataclasses.replace(data, train=None)
    pool = filter_pool(schedule, parallel.replicate(mesh, params), mstate, pool)
    t = Trainer(cfg, model, schedule, tx, mesh, pool, writer, bar.write, params, opt_state, mstate, start, loss_scale,
                 cams, train_key)
    closing.callback(t.close)  # also when training fails: no compile thread or compile listener left behind

    best = BestKeeper(run_dir, resume) if cfg.keep_best else None
    viewer = open_training_viewer(cfg, train_cameras, t, render_mesh, closing) if cfg.viewer else None

    def refined_cameras() -> np.ndarray:
        """The training cameras' poses (V, 4, 4) as refined so far. The corrections are
        replicated, so this process's first copy is all of them (several hosts: not addressable
        as a whole)."""
        return refined_c2w(train_cameras.c2w, np.asarray(t.cams["delta"].addressable_data(0)))

    def judged_views():
        """The eval views, with pose refinement carried along with the training views'
        corrections so far (cameras.carried): the field's frame moves with them."""
        return carried_views(data.eval, train_cameras, refined_cameras()) if refine else data.eval

    def saved() -> None:
        """After a checkpoint: with --keep-best, judge it on every eval view."""
        if best is not None:
            psnr_all = best.consider(t, evaluate_views(t.model, t.params, judged_views(), run_dir / "eval",
                                                       data.eval_split, cfg.render_chunk, verbose=False,
                                                       mesh=render_mesh, write=False, with_lpips=False)["psnr"])
            writer.add_scalar("eval/psnr_all_views", psnr_all, t.step)

    budget_s = None if cfg.time_budget_minutes is None else 60.0 * cfg.time_budget_minutes
    clock = TrainingClock(elapsed0, shared=jax.process_count() > 1)
    psnr, rays_per_s = float("nan"), 0.0
    window_t, window_steps = time.perf_counter(), 0
    last_saved = start if resume else None
    quality = QualityCurve(cfg, run_dir, primary) if cfg.quality_every_s > 0 else None
    # Between schedule events, logs, evals and checkpoints the loop only queues steps: any
    # transfer there (a scalar fetched, a batch sent) would stall the device, so it is an error.
    with jax.transfer_guard("disallow"):
        while True:
            if viewer is not None:
                clock.pause(viewer.wait_while_paused())  # paused time is not training time
            elapsed = clock.elapsed()
            if (budget_s is None and t.step >= cfg.steps) or (budget_s is not None and elapsed >= budget_s):
                break
            if cfg.stop_after_minutes is not None and elapsed >= 60.0 * cfg.stop_after_minutes:
                t.log(f"step {t.step}: stopping, --stop-after-minutes {cfg.stop_after_minutes:g} reached")
                break
            sched = schedule_step(cfg, t.step, elapsed)
            if schedule.pending(t.mstate, int(sched)):
                with _host_work():
                    t.apply_schedule(sched)
            stats = t.train_step(sched)
            crash_point("step", t.step)
            window_steps += 1
            bar.update(1)
            if viewer is not None and viewer.wants(t.step):
                with _host_work():
                    viewer.publish(t.model, t.params, t.step)

            if t.step % cfg.log_every == 0 or t.step == 1:
                with _host_work():
                    t.tighten()
                    clock.sync()
                    host = t.check(stats)
                    now = time.perf_counter()
                    rays_per_s = window_steps * cfg.batch_size / max(now - window_t, 1e-9)
                    window_t, window_steps = now, 0
                    psnr = float(mse_to_psnr(host["mse"]))
                    grid = t.mstate.get("resolution")
                    bar.set_postfix(psnr=f"{psnr:.2f}", **({"grid": "x".join(map(str, grid))} if grid else {}))
                    # dropped: live samples the work budgets left out since the last log (should be 0).
                    for name, value in (("loss", host["loss"]), ("psnr", psnr), ("rays_per_s", rays_per_s),
                                        ("dropped", host["dropped"])):
                        writer.add_scalar(f"train/{name}", float(value), t.step)
                    for name in set(stats) - {"loss", "mse"}:  # the model's own terms (e.g. interlevel)
                        writer.add_scalar(f"train/{name}", float(host[name]), t.step)
                    for g, lr in jax.device_get(lrs_at(cfg, sched)).items():
                        if g in GROUPS:
                            writer.add_scalar(f"train/lr_{g}", float(lr), t.step)
                    if refine:
                        writer.add_scalar("train/lr_camera", float(camera_lr(cfg.camera_opt, sched)), t.step)
                    if expose:
                        writer.add_scalar("train/lr_exposure", float(exposure_lr(cfg.exposure, sched)), t.step)
                    if host["loss_scale"] is not None:
                        writer.add_scalar("train/loss_scale", float(host["loss_scale"]), t.step)
                        writer.add_scalar("train/skipped_steps", int(host["total_skipped"]), t.step)
                    if grid:
                        writer.add_scalar("train/grid_voxels", math.prod(grid), t.step)
                    if viewer is not None:
                        viewer.show_training(t.step, psnr, rays_per_s, grid)
            if cfg.eval_every and t.step % cfg.eval_every == 0:
                with _host_work():
                    log_eval_view(writer, t.model, t.params, judged_views(), data.scene.near_far, cfg.render_chunk,
                                  t.step, render_mesh)
            if quality is not None and clock.elapsed() >= quality.next_s:
                with _host_work():
                    quality.measure(t, clock, judged_views(), render_mesh, writer)
            if cfg.checkpoint_every and t.step % cfg.checkpoint_every == 0:
                with _host_work():
                    t.save(ckpt, clock.elapsed())
                    saved()
                last_saved = t.step

    elapsed = clock.elapsed()
    bar.close()
    t.close()
    if last_saved != t.step:
        t.save(ckpt, elapsed)
        saved()
    ckpt.close()
    if refine and primary:
        write_cameras(run_dir, dataclasses.replace(train_cameras, c2w=refined_cameras()), name="cameras_refined.json")
    if expose and primary:
        write_exposure(run_dir, np.asarray(maps(t.cams["exposure"].addressable_data(0), cfg.exposure.mode)))
    if best is not None:
        best.checkpoints.close()
    writer.flush()

    metrics = None
    if cfg.final_eval:
        metrics = evaluate_views(t.model, t.params, judged_views(), run_dir / "eval", data.eval_split, cfg.render_chunk,
                                 verbose=primary, mesh=render_mesh, write=primary, with_lpips=cfg.eval_lpips)
        writer.add_scalar("eval/psnr", metrics["psnr"], t.step)
        writer.add_scalar("eval/ssim", metrics["ssim"], t.step)
        if refine and primary:
            # Carried, each held-out view keeps its own pose error, which the refined training
            # views have shed: on lego posed from its renders that read as a 2.7 dB loss where
            # fitted poses show a 0.25 dB gain (docs/captures.md, "lego from its own renders").
            print(f"held-out poses carried with the training views' refinement, each with its own error; to compare "
                  f"with an unrefined run: python -m tensorf.eval --run-dir {run_dir} --fit-poses 100", flush=True)
    writer.close()
    if viewer is not None:
        viewer.publish(t.model, t.params, t.step)
        viewer.show_training(t.step, psnr, rays_per_s, t.mstate.get("resolution"))
        if cfg.viewer_keep_open:
            print(f"training done; the viewer stays at {viewer.url} until Ctrl-C", flush=True)
            try:
                while True:
                    time.sleep(3600.0)
            except KeyboardInterrupt:
                pass
    return TrainResult(steps=t.step, elapsed_s=elapsed, compile_s=t.compile_s, train_psnr=psnr, rays_per_s=rays_per_s,
                       eval_metrics=metrics, model=t.model, params=t.params, model_state=t.mstate,
                       quality=quality.points if quality is not None else [], compiles=t.compiles,
                       tightened=t.tightened, event_compiles=t.event_compiles)


def open_training_viewer(cfg: TrainConfig, cameras, t: "Trainer", mesh, closing: contextlib.ExitStack):
    """The --viewer page of this run (closed with the run), showing its parameters as they are."""
    from tensorf.viewer.renderer import Snapshot
    from tensorf.viewer.server import Viewer

    viewer = Viewer(cfg.run_dir, cameras, Snapshot.take(t.model, t.params, t.step, mesh), port=cfg.viewer_port,
                    chunk=min(cfg.render_chunk, 4096), mesh=mesh, training=True, update_every=cfg.viewer_every)
    closing.callback(viewer.close)
    t.log(f"viewer at {viewer.url}")
    return viewer


def _host_work():
    """Where the training loop may move data between host and device (see train)."""
    return jax.transfer_guard("allow")
