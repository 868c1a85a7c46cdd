"""NeRF (Mildenhall et al. 2020) and its large JaxNeRF+ variant: two MLPs, hierarchical sampling.

What runs inside jit. Params: {"coarse": MLP params, "fine": MLP params}, all in the "mlp"
optimizer group. No shapes change during training: the state is empty and the model has no
schedule events (models.base.NoEvents).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tensorf.config import NeRFConfig
from tensorf.data.cameras import ndc_world_directions
from tensorf.data.rays import Rays
from tensorf.data.views import Scene
from tensorf.fields.nerf_mlp import encode
from tensorf.models.nerf.mlp_model import Level, MLPModel
from tensorf.render import (
    composite_all,
    compositing_weights,
    pdf_samples,
    ray_background,
    stratified_samples,
)


@dataclasses.dataclass(frozen=True)
class NeRF(MLPModel):
    config: NeRFConfig
    scene: Scene

    # --- shapes -----------------------------------------------------------------------------

    def init(self, key: jax.Array, state: dict | None = None) -> dict:
        c = self.config
        points = jnp.zeros((1, 3 * (1 + 2 * c.position_freqs)))
        dirs = jnp.zeros((1, 3 * (1 + 2 * c.direction_freqs)))
        k_coarse, k_fine = jax.random.split(key)
        return {"coarse": self._mlp.init(k_coarse, points, dirs), "fine": self._mlp.init(k_fine, points, dirs)}

    # --- fields -------------------------------------------------------------------------------

    def _query(self, net_params, xyz: jax.Array, viewdirs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Raw density (M,) and RGB (M, 3) of one network at points (M, 3) seen along (M, 3)."""
        c = self.config
        return self._mlp.apply(net_params, encode(xyz, c.position_freqs), encode(viewdirs, c.direction_freqs))

    def density(self, params: dict, xyz: jax.Array) -> jax.Array:
        sigma, _ = self._query(params["fine"], xyz, jnp.zeros_like(xyz))
        return jax.nn.relu(sigma)

    def color(self, params: dict, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        return self._query(params["fine"], xyz, viewdirs)[1]

    # --- rendering ----------------------------------------------------------------------------

    def _viewdirs(self, rays: Rays) -> jax.Array:
        """The directions the colour branch sees: the rays' own, or (world_viewdirs, NDC scenes)
        their world-space ones."""
        if not (self.config.world_viewdirs and self.scene.ndc):
            return rays.directions
        if self.scene.ndc_scale is None:
            raise ValueError("world_viewdirs needs the scene's NDC projection (Scene.ndc_scale)")
        return ndc_world_directions(rays.origins, rays.directions, self.scene.ndc_scale)

    def _composite(self, net_params, rays: Rays, t: jax.Array, noise_key) -> Level:
        """Render samples at distances t (B, N) along the rays with one network."""
        b, n = t.shape
        xyz = rays.origins[:, None, :] + t[..., None] * rays.directions[:, None, :]
        dirs = jnp.broadcast_to(self._viewdirs(rays)[:, None, :], xyz.shape)
        sigma, rgb = self._query(net_params, xyz.reshape(-1, 3), dirs.reshape(-1, 3))
        sigma, rgb = self._near_gradient(sigma.reshape(b, n), t), self._near_gradient(rgb.reshape(b, n, 3), t[..., None])
        if noise_key is not None and self.config.density_noise > 0:
            sigma = sigma + self.config.density_noise * jax.vmap(lambda k: jax.random.normal(k, (n,)))(noise_key)
        # The last sample reaches to infinity (NeRF); directions are unit, so spacing is distance.
        # The depth loss measures the last sample by the gap before it instead.
        gaps = jnp.diff(t, axis=-1)
        weights = compositing_weights(jax.nn.relu(sigma), jnp.concatenate([gaps, jnp.full((b, 1), 1e10)], axis=-1))
        out = composite_all(weights, rgb, t, ray_background(rays, self.scene.background), rays.exposure)
        return Level(out, weights, t, jnp.concatenate([gaps, gaps[:, -1:]], axis=-1))

    def coarse_samples(self, rays: Rays, u: jax.Array | None) -> jax.Array:
        """t (B, coarse_samples): stratified over [near, far]; in NDC (JaxNeRF's LLFF setting)
        evenly in NDC depth from the near plane (z = -1) to infinity (z = +1), i.e. up to
        t = 2 / d_z along our unit NDC directions. u: (B, n) uniforms, or None (bin edges)."""
        n, b = self.config.coarse_samples, rays.origins.shape[0]
        if self.scene.ndc:
            reach = 2.0 / jnp.maximum(rays.directions[:, 2], 1e-6)
            return stratified_samples(0.0, 1.0, n, u, b) * reach[:, None]
        return stratified_samples(*self.scene.near_far, n, u, b)

    def render_both(self, params: dict, rays: Rays, keys: jax.Array | None) -> tuple[Level, Level]:
        """The coarse level (stratified samples) and the fine one (the coarse samples plus samples
        drawn from the coarse weights, sorted)."""
        c = self.config
        draws = None if keys is None else jax.vmap(lambda k: jax.random.split(k, 4))(keys)
        uniform = lambda i, n: None if draws is None else jax.vmap(lambda k: jax.random.uniform(k, (n,)))(draws[:, i])  # noqa: E731
        noise = lambda i: None if draws is None else draws[:, i]  # noqa: E731
        t_coarse = self.coarse_samples(rays, uniform(0, c.coarse_samples))
        coarse = self._composite(params["coarse"], rays, t_coarse, noise(2))
        mids = 0.5 * (t_coarse[:, 1:] + t_coarse[:, :-1])
        t_fine = pdf_samples(mids, coarse.weights[:, 1:-1], c.fine_samples, uniform(1, c.fine_samples))
        t_all = jnp.sort(jnp.concatenate([t_coarse, t_fine], axis=-1), axis=-1)
        return coarse, self._composite(params["fine"], rays, t_all, noise(3))
