"""The jitted train step: a pure function of (params, optimizer state, running totals, a ray
batch, a key, learning rates, loss weights). Rays and colours have the ray axis first, the axis a
data-parallel step shards."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tensorf.data.rays import Rays
from tensorf.models.base import Model


def initial_totals() -> dict[str, jax.Array]:
    """Running totals the step keeps on the device, so the loop need not fetch them every step:
    live samples the work budgets dropped, and steps whose loss was not finite."""
    return {"dropped": jnp.zeros((), jnp.float32), "nonfinite": jnp.zeros((), jnp.int32)}


def make_train_step(model: Model, tx: optax.GradientTransformation):
    def loss_fn(params, rays: Rays, colors, key, weights):
        out = model.render(params, rays, key)
        mse = jnp.mean((out.rgb - colors) ** 2)
        return mse + model.regularizer(params, weights), (mse, jnp.sum(out.dropped))

    def step(params, opt_state, totals, rays: Rays, colors, key, lrs: dict[str, jax.Array], weights: dict[str, jax.Array]):
        (loss, (mse, dropped)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rays, colors, key, weights)
        grads = jax.lax.optimization_barrier(grads)  # faster on CPU: no fusion into Adam (benchmarks/results.md)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u, g: -lrs[g] * u, updates, model.param_groups(params))
        params = optax.apply_updates(params, updates)
        totals = {
            "dropped": totals["dropped"] + dropped,
            "nonfinite": totals["nonfinite"] + (~jnp.isfinite(loss)).astype(jnp.int32),
        }
        return params, opt_state, totals, {"loss": loss, "mse": mse}

    # Donating params/opt_state saves a copy of the grids on accelerators; on the CPU backend it
    # made the step slower (benchmarks/results.md), so it is left off there.
    donate = (0, 1) if jax.default_backend() != "cpu" else ()
    return jax.jit(step, donate_argnums=donate)


@jax.jit
def all_finite(tree) -> jax.Array:
    """True when every leaf of a pytree is finite (checked before a checkpoint is written)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))
