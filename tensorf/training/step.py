"""The jitted train step: a pure function of (params, optimizer state, running totals, the loss
scale, the ray pool, the step count, the schedule position, a key). It draws its own batch; rays
and colours have the ray axis first, the axis a data-parallel step shards. Master params and Adam state stay float32; the
model's compute dtype applies inside its lookups and MLP; the loss and the update are float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax_dataclasses as jdc
import optax
from flax.training.dynamic_scale import DynamicScale
from jax.sharding import Mesh

from tensorf.config import CameraOptConfig, ExposureConfig
from tensorf.data import turntable
from tensorf.data.rays import RayPool, Rays
from tensorf.models.base import Model
from tensorf.parallel import AXIS, data_parallel
from tensorf.training import cameras, exposure


def initial_totals() -> dict[str, jax.Array]:
    """Running totals the step keeps on the device, so the loop need not fetch them every step:
    live samples the work budgets dropped, steps whose loss was not finite, and updates skipped
    because a loss-scaled gradient overflowed."""
    return {"dropped": jnp.zeros((), jnp.float32), "nonfinite": jnp.zeros((), jnp.int32),
            "skipped": jnp.zeros((), jnp.int32)}


def initial_loss_scale() -> dict[str, jax.Array]:
    """Dynamic loss scale for float16 compute (flax DynamicScale's defaults: 2^16, doubled after
    2000 clean steps, halved on an overflow). A plain dict, so that checkpoints carry it."""
    ds = DynamicScale()
    return {"scale": jnp.asarray(ds.scale, jnp.float32), "fin_steps": jnp.asarray(ds.fin_steps, jnp.int32)}


def make_train_step(model: Model, tx: optax.GradientTransformation, lr_schedule, batch_size: int,
                    mesh: Mesh | None = None, single_image: bool = False, background_warmup: int = 0,
                    camera_opt: CameraOptConfig | None = None, exposure_cfg: ExposureConfig | None = None):
    """The jitted step
    (params, opt_state, totals, loss_scale, cams, pool, step, sched, key)
        -> (params, opt_state, totals, loss_scale, cams, step + 1, stats).

    Everything it needs is on the device already: the batch is drawn from `pool` (a RayPool)
    with a key folded from (key, step), the learning rates (`lr_schedule(sched)`) and loss
    weights are computed at schedule position `sched` (a float32 scalar; None: the step count
    itself), and `step` is an int32 scalar the step returns incremented. So the loop transfers
    nothing per step.

    loss_scale is None, or (float16 compute) the dynamic loss scale: the loss is multiplied by it
    before differentiation so small float16 gradients do not flush to zero, and an update whose
    gradients overflow is skipped while the scale halves. With a mesh of several devices, each
    device renders its shard of the batch and the gradients are averaged across them (pmean),
    which gives the gradient of the whole batch: the loss is a mean over rays and the
    regularisers see the same params everywhere. background_warmup: see warmup_background.

    cams is None, or the training views' learned corrections and their Adam states: with
    camera_opt.mode not off, "delta" and "opt", their poses' (tensorf.training.cameras): the
    batch's rays are then cast inside the differentiated loss, from the corrected cameras; with
    exposure_cfg.mode not off, "exposure" and "exposure_opt", their colour maps
    (tensorf.training.exposure), carried by each ray into compositing. The corrections are
    updated with the params."""
    parallel = mesh is not None and mesh.size > 1
    axis = AXIS if parallel else None
    refine = camera_opt is not None and camera_opt.mode != "off"
    expose = exposure_cfg is not None and exposure_cfg.mode != "off"
    # Each learned correction: its Adam state's key in cams, its transform and its rate's name.
    learned = {**({"delta": ("opt", cameras.camera_tx(), "camera")} if refine else {}),
               **({"exposure": ("exposure_opt", exposure.exposure_tx(), "exposure")} if expose else {})}

    def loss_fn(diff, rays: Rays, ids, pool: RayPool, colors, keys, weights):
        params, corr = diff
        extra = jnp.float32(0.0)
        if refine:
            o, d, r = pool.geometry(ids, cameras.corrected(pool.c2w, corr["delta"]))
            rays = jdc.replace(rays, origins=o, directions=d, radii=r)
            extra += cameras.penalty(camera_opt, corr["delta"])
        if expose:
            rays = jdc.replace(rays, exposure=exposure.maps(corr["exposure"], exposure_cfg.mode)[pool.views_of(ids)])
            extra += exposure.penalty(exposure_cfg, corr["exposure"])
        loss, aux = model.training_loss(params, rays, colors, keys, weights)
        return (loss + extra if learned else loss), aux

    def update(params, opt_state, totals, loss_scale, cams, rays: Rays, ids, colors, keys, pool, lrs, weights):
        diff = (params, {k: cams[k] for k in learned})
        # Each device differentiates its own shard's loss: params enter as per-device values, so
        # that their gradients are the shard's (averaged below), not already summed over devices.
        diff_in = jax.lax.pcast(diff, AXIS, to="varying") if parallel else diff
        args = (diff_in, rays, ids, pool, colors, keys, weights)
        if loss_scale is None:
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(*args)
            if parallel:
                grads = jax.lax.pmean(grads, AXIS)
            finite = jnp.bool_(True)
        else:
            ds = DynamicScale(scale=loss_scale["scale"], fin_steps=loss_scale["fin_steps"])
            ds, finite, (loss, aux), grads = ds.value_and_grad(loss_fn, has_aux=True, axis_name=axis)(*args)
            loss_scale = {"scale": ds.scale, "fin_steps": ds.fin_steps}
        aux = dict(aux)
        dropped = aux.pop("dropped")
        if parallel:
            loss, aux = jax.lax.pmean((loss, aux), AXIS)
            dropped = jax.lax.psum(dropped, AXIS)
        grads = jax.lax.optimization_barrier(grads)  # faster on CPU: no fusion into Adam (benchmarks/results.md)
        grads, corr_grads = grads
        new_cams = cams
        if learned:
            new_cams = {}
            for k, (opt_key, ctx, rate) in learned.items():
                corr_updates, new_cams[opt_key] = ctx.update(corr_grads[k], cams[opt_key])
                new_cams[k] = cams[k] - lrs[rate] * corr_updates
        updates, new_opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u, g: -lrs[g] * u, updates, model.param_groups(params))
        new_params = optax.apply_updates(params, updates)
        if loss_scale is not None:  # an overflowed update is skipped: params and moments unchanged
            new_params, new_opt_state, new_cams = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old), (new_params, new_opt_state, new_cams),
                (params, opt_state, cams)
            )
        totals = {
            "dropped": totals["dropped"] + dropped,
            "nonfinite": totals["nonfinite"] + (~jnp.isfinite(loss)).astype(jnp.int32),
            "skipped": totals["skipped"] + (~finite).astype(jnp.int32),
        }
        return new_params, new_opt_state, totals, loss_scale, new_cams, {"loss": loss, **aux}

    if parallel:
        update = data_parallel(update, mesh, n_before=5, n_batch_args=4, n_after=3)

    def step(params, opt_state, totals, loss_scale, cams, pool: RayPool, step, sched, key):
        if sched is None:
            sched = step.astype(jnp.float32)
        ids, rays, colors, keys = draw_batch(pool, key, step, batch_size, single_image)
        if rays.background is not None and background_warmup:
            rays = warmup_background(rays, colors, sched, model.scene.background, background_warmup)
        lrs = lr_schedule(sched)
        if refine:
            lrs = {**lrs, "camera": cameras.camera_lr(camera_opt, sched)}
        if expose:
            lrs = {**lrs, "exposure": exposure.exposure_lr(exposure_cfg, sched)}
        # The ids and the pool only where the loss needs each ray's view.
        out = update(params, opt_state, totals, loss_scale, cams, rays, ids if learned else None, colors, keys,
                     pool if learned else None, lrs, model.loss_weights(sched, lrs["decay"]))
        stats = {**out[5], **(cameras.summary(out[4]["delta"]) if refine else {}),
                 **(exposure.summary(out[4]["exposure"], exposure_cfg.mode) if expose else {})}
        return *out[:5], step + 1, stats

    return jax.jit(step, donate_argnums=(0, 1) if donates() else ())


def draw_batch(pool: RayPool, key: jax.Array, step, size: int, single_image: bool = False
               ) -> tuple[jax.Array, Rays, jax.Array, jax.Array]:
    """The batch of step `step`: ray ids, rays, colours and one key per ray (for the sample
    jitter), a pure function of (key, step) and the pool (see RayPool.draw for single_image)."""
    draw_key, ray_key = jax.random.split(jax.random.fold_in(key, step))
    ids = pool.draw_ids(draw_key, size, single_image)
    rays, colors = pool.rays(ids)
    # One key per ray, drawn for the whole batch: a ray's jitter does not depend on the shard.
    return ids, rays, colors, jax.random.split(ray_key, size)


def warmup_background(rays: Rays, colors: jax.Array, sched: jax.Array, flat: float, steps: int) -> Rays:
    """Turntable captures (tensorf.data.turntable): until schedule position `steps`, rays whose
    colour (B, 3) their camera background does not explain see the flat background instead,
    which gives way to the camera's between `steps` and 2 x `steps`.

    An empty field in front of the camera's background gets no gradient: nothing is shaded, and
    the object's pixels are not darker than their median (which is the object's own blur), so
    the object would never start. Against the flat background it starts as on any capture,
    while the rays the room explains keep the room behind them and never ask the field for haze
    (benchmarks/results.md, the head capture's warm-up table)."""
    explained = jnp.mean(jnp.abs(colors - rays.background), axis=-1, keepdims=True) < turntable.MATCH
    start = jnp.where(explained, rays.background, flat)
    fade = jnp.clip(sched / steps - 1.0, 0.0, 1.0)
    return jdc.replace(rays, background=start + fade * (rays.background - start))


def undonated(tree):
    """`tree` safe to hand to a background writer: a device copy when the step donates (the next
    step would otherwise reuse buffers orbax may still be reading)."""
    return jax.tree.map(jnp.copy, tree) if donates() else tree


def donates() -> bool:
    """Whether the step donates params and optimizer state: it saves a copy of the grids on
    accelerators; on the CPU backend it made the step slower (benchmarks/results.md)."""
    return jax.default_backend() != "cpu"


@jax.jit
def all_finite(tree) -> jax.Array:
    """True when every leaf of a pytree is finite (checked before a checkpoint is written)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))
