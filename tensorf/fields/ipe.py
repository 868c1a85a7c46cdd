"""mip-NeRF's integrated positional encoding (Barron et al. 2021, section 3.1; google/mipnerf
internal/mip.py): a conical frustum along a ray as a Gaussian, and the expected sin/cos
features of that Gaussian, which fade out the frequencies finer than the frustum."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def frustum_gaussians(origins: jax.Array, directions: jax.Array, radii: jax.Array, t0: jax.Array, t1: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
    """Mean (B, N, 3) and diagonal covariance (B, N, 3) of the conical frustums between t0 and
    t1 (B, N) of cones from origins (B, 3) along unit directions (B, 3) with radius `radii` (B,)
    at unit distance. The paper's stable form (eq. 7, in mid-point and half-width)."""
    mu, hw = 0.5 * (t0 + t1), 0.5 * (t1 - t0)
    denom = 3.0 * mu**2 + hw**2
    t_mean = mu + 2.0 * mu * hw**2 / denom
    t_var = hw**2 / 3.0 - (4.0 / 15.0) * hw**4 * (12.0 * mu**2 - hw**2) / denom**2
    r_var = radii[:, None] ** 2 * (mu**2 / 4.0 + (5.0 / 12.0) * hw**2 - (4.0 / 15.0) * hw**4 / denom)
    d = directions[:, None, :]
    mean = origins[:, None, :] + t_mean[..., None] * d
    # Along the ray the variance is t_var, across it r_var: diag(t_var d d^T + r_var (I - d d^T)).
    cov = t_var[..., None] * d**2 + r_var[..., None] * (1.0 - d**2)
    return mean, cov


def ray_frustums(rays, t0: jax.Array, t1: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The conical frustums of rays (Rays with radii) between t0 and t1 (B, N), flattened for an
    MLP: means, variances and the rays' directions, each (B * N, 3)."""
    if rays.radii is None:
        raise ValueError("mip-NeRF models render cones: the rays need their pixels' radii (Rays.radii)")
    mean, var = frustum_gaussians(rays.origins, rays.directions, rays.radii, t0, t1)
    dirs = jnp.broadcast_to(rays.directions[:, None, :], mean.shape)
    return mean.reshape(-1, 3), var.reshape(-1, 3), dirs.reshape(-1, 3)


def integrated_encoding(mean: jax.Array, var: jax.Array, min_deg: int, max_deg: int) -> jax.Array:
    """E[sin], E[cos] of Gaussians (..., D) with diagonal variance `var` at scales 2^min_deg ..
    2^(max_deg - 1): (..., 2 D (max_deg - min_deg)), each feature damped by exp(-var_k / 2).
    With zero variance it is the plain positional encoding (without the input itself)."""
    scales = 2.0 ** jnp.arange(min_deg, max_deg, dtype=jnp.float32)
    y = (mean[..., None, :] * scales[:, None]).reshape(*mean.shape[:-1], -1)
    y_var = (var[..., None, :] * scales[:, None] ** 2).reshape(*mean.shape[:-1], -1)
    damp = jnp.exp(-0.5 * jnp.concatenate([y_var, y_var], axis=-1))
    return damp * jnp.sin(jnp.concatenate([y, y + 0.5 * jnp.pi], axis=-1))
