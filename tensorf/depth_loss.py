"""The depth loss of DS-NeRF (Deng et al. 2022, "Depth-supervised NeRF"), as nerfstudio's
depth-nerfacto trains with measured depth (model_components/losses.py, ds_nerf_depth_loss):
each sample's weight is pushed up in proportion to a Gaussian around the ray's measured depth,

    loss = mean over rays of  sum_i -log(w_i + eps) exp(-(t_i - d)^2 / (2 sigma^2)) delta_i,

so the ray's weight gathers where the depth says its surface is. Rays with no measure (d = 0)
add nothing. nerfstudio writes the Gaussian's denominator as 2 sigma with sigma = 0.01: a
standard deviation of 0.1 in its normalised scene units, the default here."""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-7  # nerfstudio's


def ds_nerf_loss(weights: jax.Array, t: jax.Array, lengths: jax.Array, target: jax.Array, sigma: float) -> jax.Array:
    """() mean over the batch of the DS-NeRF loss of the rays' compositing weights (B, N) at
    sample distances t (B, N) with bin lengths (B, N) (or broadcastable), against measured ray
    distances target (B,) (0: none)."""
    near = jnp.exp(-((t - target[:, None]) ** 2) / (2.0 * sigma**2))
    per_ray = jnp.sum(-jnp.log(weights + EPS) * near * lengths, axis=-1)
    return jnp.mean(jnp.where(target > 0, per_ray, 0.0))
