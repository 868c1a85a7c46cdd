"""What the MLP-only models (NeRF, JaxNeRF+, mip-NeRF) share: the network built from the config,
a coarse and a fine render whose MSEs make the loss, no shapes that change, no schedule events,
no regularisers. Every parameter is in the "mlp" optimizer group."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tensorf.data.rays import Rays
from tensorf.fields.nerf_mlp import NeRFMLP
from tensorf.render import RenderOutput, near_camera_gradient


class MLPModel:
    """Mixed into a frozen dataclass with `config` (net_depth, net_width, skip_layer,
    net_depth_condition, net_width_condition, compute_dtype) and `scene` that defines
    render_both(params, rays, keys) -> (coarse, fine)."""

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
        return self.render_both(params, rays, keys)[1]

    def training_loss(self, params: dict, rays: Rays, colors: jax.Array, keys: jax.Array, weights: dict):
        """coarse_loss_weight times the coarse render's MSE plus the fine one's; reports the fine
        one's MSE."""
        coarse, fine = self.render_both(params, rays, keys)
        mse_fine = jnp.mean((fine.rgb - colors) ** 2)
        loss = self.coarse_loss_weight * jnp.mean((coarse.rgb - colors) ** 2) + mse_fine
        return loss, {"mse": mse_fine, "dropped": jnp.zeros(())}

    def loss_weights(self, step: jax.Array, decay: jax.Array) -> dict[str, jax.Array]:
        return {}

    def regularizer(self, params: dict, weights: dict) -> jax.Array:
        return jnp.zeros(())
