"""What the MLP-only models (NeRF, JaxNeRF+, mip-NeRF) share: the network built from the config,
a coarse and a fine render whose MSEs (and, with --data.depth, depth losses) make the loss, no
shapes that change, no schedule events, no regularisers. Every parameter is in the "mlp"
optimizer group."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from tensorf.data.rays import Rays
from tensorf.depth_loss import ds_nerf_loss
from tensorf.fields.nerf_mlp import NeRFMLP
from tensorf.render import RenderOutput, near_camera_gradient


class Level(NamedTuple):
    """One sampling level's render and the samples it composited: weights (B, N) at distances t
    (B, N) along the rays, each sample standing for an interval of lengths (B, N)."""

    out: RenderOutput
    weights: jax.Array
    t: jax.Array
    lengths: jax.Array


def depth_loss(level: Level, rays: Rays, sigma: float) -> jax.Array:
    """() the DS-NeRF loss of a level's weights against the rays' measured depths."""
    return ds_nerf_loss(level.weights, level.t, level.lengths, rays.target_depth, sigma)


class MLPModel:
    """Mixed into a frozen dataclass with `config` (net_depth, net_width, skip_layer,
    net_depth_condition, net_width_condition, depth_weight, depth_sigma, compute_dtype) and
    `scene` that defines render_both(params, rays, keys) -> (coarse, fine) Levels."""

    coarse_loss_weight = 1.0
    """The coarse render's MSE weight in the loss (NeRF: the sum of both)."""

    @property
    def _mlp(self) -> NeRFMLP:
        c = self.config
        return NeRFMLP(depth=c.net_depth, width=c.net_width, skip=c.skip_layer, depth_cond=c.net_depth_condition,
                       width_cond=c.net_width_condition, dtype=jnp.dtype(c.compute_dtype))

    def _near_gradient(self, x: jax.Array, t: jax.Array) -> jax.Array:
        """x as it is, its gradient scaled where t (broadcast against x), the samples' distance
        from the camera, is under config.near_gradient_distance (render.near_camera_gradient)."""
        distance = self.config.near_gradient_distance
        if distance == "auto":
            raise ValueError("the NeRF family needs a config with its auto choices resolved (config.resolve)")
        return near_camera_gradient(x, t, distance)

    def initial_state(self) -> dict:
        return {"budgets": None}

    def for_state(self, state: dict):
        return self

    def param_groups(self, params: dict):
        return jax.tree.map(lambda _: "mlp", params)

    def render(self, params: dict, rays: Rays, keys: jax.Array | None) -> RenderOutput:
        return self.render_both(params, rays, keys)[1].out

    def training_loss(self, params: dict, rays: Rays, colors: jax.Array, keys: jax.Array, weights: dict):
        """coarse_loss_weight times the coarse render's MSE plus the fine one's; with measured
        depths, the depth loss of each level weighted alike (the coarse weights place the fine
        samples). Reports the fine level's MSE and depth loss."""
        c = self.config
        coarse, fine = self.render_both(params, rays, keys)
        mse_fine = jnp.mean((fine.out.rgb - colors) ** 2)
        loss = self.coarse_loss_weight * jnp.mean((coarse.out.rgb - colors) ** 2) + mse_fine
        aux = {"mse": mse_fine, "dropped": jnp.zeros(())}
        if rays.target_depth is not None and c.depth_weight:
            aux["depth"] = depth_loss(fine, rays, c.depth_sigma)
            loss += c.depth_weight * (self.coarse_loss_weight * depth_loss(coarse, rays, c.depth_sigma) + aux["depth"])
        return loss, aux

    def loss_weights(self, step: jax.Array, decay: jax.Array) -> dict[str, jax.Array]:
        return {}

    def regularizer(self, params: dict, weights: dict) -> jax.Array:
        return jnp.zeros(())
