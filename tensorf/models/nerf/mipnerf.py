"""mip-NeRF (Barron et al. 2021): NeRF with conical frustums and the integrated positional
encoding, one MLP for both sampling levels.

What runs inside jit. Params: {"mlp": MLP params}, in the "mlp" optimizer group; no shapes change
during training (models.base.NoEvents). Rays must carry their pixels' cone radii (Rays.radii,
which every camera's rays do); distances are along unit directions, so the sample intervals'
lengths are the compositing deltas.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tensorf.config import MipNeRFConfig
from tensorf.data.rays import Rays
from tensorf.data.views import Scene
from tensorf.fields.ipe import integrated_encoding, ray_frustums
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
class MipNeRF(MLPModel):
    config: MipNeRFConfig
    scene: Scene

    @property
    def coarse_loss_weight(self) -> float:
        return self.config.coarse_loss_weight

    # --- shapes -----------------------------------------------------------------------------

    def init(self, key: jax.Array, state: dict | None = None) -> dict:
        c = self.config
        points = jnp.zeros((1, 6 * (c.max_deg_point - c.min_deg_point)))
        dirs = jnp.zeros((1, 3 * (1 + 2 * c.deg_view)))
        return {"mlp": self._mlp.init(key, points, dirs)}

    # --- fields -------------------------------------------------------------------------------

    def _query(self, params, mean: jax.Array, var: jax.Array, viewdirs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Raw density (M,) and RGB (M, 3) of Gaussians (M, 3) seen along (M, 3)."""
        c = self.config
        var = var if c.integrate else jnp.zeros_like(var)
        raw, rgb = self._mlp.apply(params["mlp"], integrated_encoding(mean, var, c.min_deg_point, c.max_deg_point),
                                   encode(viewdirs, c.deg_view))
        return raw, rgb * (1.0 + 2.0 * c.rgb_padding) - c.rgb_padding

    def _sigma(self, raw: jax.Array) -> jax.Array:
        return jax.nn.softplus(raw + self.config.density_bias)

    def density(self, params: dict, xyz: jax.Array) -> jax.Array:
        """At points: the encoding of a Gaussian of no extent (the finest detail the MLP holds)."""
        raw, _ = self._query(params, xyz, jnp.zeros_like(xyz), jnp.zeros_like(xyz))
        return self._sigma(raw)

    def color(self, params: dict, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        return self._query(params, xyz, jnp.zeros_like(xyz), viewdirs)[1]

    # --- rendering ----------------------------------------------------------------------------

    def _level(self, params, rays: Rays, edges: jax.Array, noise_key) -> Level:
        """Render the intervals between sorted `edges` (B, N + 1)."""
        b, n = edges.shape[0], edges.shape[1] - 1
        t0, t1 = edges[:, :-1], edges[:, 1:]
        raw, rgb = self._query(params, *ray_frustums(rays, t0, t1))
        mid = 0.5 * (t0 + t1)
        raw, rgb = self._near_gradient(raw.reshape(b, n), mid), self._near_gradient(rgb.reshape(b, n, 3), mid[..., None])
        if noise_key is not None and self.config.density_noise > 0:
            raw = raw + self.config.density_noise * jax.vmap(lambda k: jax.random.normal(k, (n,)))(noise_key)
        weights = compositing_weights(self._sigma(raw), t1 - t0)
        out = composite_all(weights, rgb, mid, ray_background(rays, self.scene.background), rays.exposure)
        return Level(out, weights, mid, t1 - t0)

    def _coarse_edges(self, rays: Rays, u: jax.Array | None) -> jax.Array:
        """Edges (B, samples + 1): stratified over [near, far]; in NDC from the near plane to
        infinity (t = 2 / d_z along unit NDC directions), as NeRF.coarse_samples."""
        n, b = self.config.samples + 1, rays.origins.shape[0]
        if self.scene.ndc:
            reach = 2.0 / jnp.maximum(rays.directions[:, 2], 1e-6)
            return stratified_samples(0.0, 1.0, n, u, b) * reach[:, None]
        return stratified_samples(*self.scene.near_far, n, u, b)

    def render_both(self, params: dict, rays: Rays, keys: jax.Array | None) -> tuple[Level, Level]:
        """The coarse level (stratified intervals) and the fine one (intervals drawn from the
        coarse weights, max-blurred over neighbours and padded, mip-NeRF's resample_along_rays)."""
        c = self.config
        n = c.samples + 1
        draws = None if keys is None else jax.vmap(lambda k: jax.random.split(k, 4))(keys)
        uniform = lambda i: None if draws is None else jax.vmap(lambda k: jax.random.uniform(k, (n,)))(draws[:, i])  # noqa: E731
        noise = lambda i: None if draws is None else draws[:, i]  # noqa: E731
        edges = self._coarse_edges(rays, uniform(0))
        coarse = self._level(params, rays, edges, noise(2))
        w = coarse.weights
        padded = jnp.concatenate([w[:, :1], w, w[:, -1:]], axis=-1)
        peaks = jnp.maximum(padded[:, :-1], padded[:, 1:])
        blurred = 0.5 * (peaks[:, :-1] + peaks[:, 1:]) + c.resample_padding
        u = None if draws is None else (jnp.arange(n) + uniform(1)) / n  # stratified, as mip-NeRF draws them
        fine_edges = pdf_samples(edges, blurred, n, u)
        return coarse, self._level(params, rays, fine_edges, noise(3))
