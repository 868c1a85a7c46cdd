"""Adam with grouped learning rates (grid factors vs. MLP) and exponential decay (official recipe)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tensorf.config import TrainConfig
from tensorf.models.base import Model

GROUPS = ("grid", "mlp")  # "frozen" leaves (box, occupancy mask) are never updated


def make_optimizer(model: Model, optim) -> optax.GradientTransformation:
    """Adam moments per parameter group; the learning rates are applied in the step (see lrs_at),
    so that changing them never retraces."""
    adam = optax.scale_by_adam(b1=optim.betas[0], b2=optim.betas[1], eps=1e-8)
    tx = optax.multi_transform({**{g: adam for g in GROUPS}, "frozen": optax.set_to_zero()}, model.param_groups)
    return tx if optim.grad_max_norm is None else optax.chain(optax.clip_by_global_norm(optim.grad_max_norm), tx)


def lrs_at(cfg: TrainConfig, sched_step) -> dict[str, jax.Array]:
    """Learning rates at a (possibly fractional) schedule step; jittable (the step computes them).

    Official TensoRF recipe: multiply by ratio^(1/steps) every step; with lr_upsample_reset the
    decay restarts from the initial rates wherever the model restarts its optimizer (TensoRF: at
    each upsampling). JaxNeRF's log-linear decay from lr_init to lr_final is the same curve with
    ratio = lr_final / lr_init, times its warm-up (lr_delay_steps, lr_delay_mult).

    Also "decay": the decay factor without restarts or warm-up, ratio^(step / steps), by which the
    official trainer shrinks its TV weights (times lr_factor every step).
    """
    o = cfg.optim
    sched_step = jnp.asarray(sched_step, jnp.float32)
    since = jnp.float32(0.0)
    restarts = cfg.model.optimizer_restarts
    if o.lr_upsample_reset and restarts:
        ups = jnp.asarray(restarts, jnp.float32)
        since = jnp.max(jnp.where(ups <= sched_step, ups, 0.0))
    scale = jnp.float32(o.lr_decay_ratio) ** ((sched_step - since) / cfg.steps)
    if o.lr_delay_steps > 0:
        ramp = jnp.sin(0.5 * jnp.pi * jnp.clip(sched_step / o.lr_delay_steps, 0.0, 1.0))
        scale = scale * (o.lr_delay_mult + (1.0 - o.lr_delay_mult) * ramp)
    decay = jnp.float32(o.lr_decay_ratio) ** (sched_step / cfg.steps)
    return {"grid": o.lr_grid * scale, "mlp": o.lr_mlp * scale, "frozen": jnp.float32(0.0), "decay": decay}
