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
    return optax.multi_transform({**{g: adam for g in GROUPS}, "frozen": optax.set_to_zero()}, model.param_groups)


def lrs_at(cfg: TrainConfig, sched_step) -> dict[str, jax.Array]:
    """Learning rates at a (possibly fractional) schedule step; jittable (the step computes them).

    Official recipe: multiply by ratio^(1/steps) every step; with lr_upsample_reset the decay
    restarts from the initial rates at each upsampling, together with the optimizer state.
    """
    o = cfg.optim
    sched_step = jnp.asarray(sched_step, jnp.float32)
    since = jnp.float32(0.0)
    if o.lr_upsample_reset and cfg.model.upsample_steps:
        ups = jnp.asarray(cfg.model.upsample_steps, jnp.float32)
        since = jnp.max(jnp.where(ups <= sched_step, ups, 0.0))
    scale = jnp.float32(o.lr_decay_ratio) ** ((sched_step - since) / cfg.steps)
    return {"grid": o.lr_grid * scale, "mlp": o.lr_mlp * scale, "frozen": jnp.float32(0.0)}
