"""TensoRF (Chen et al. 2022): VM density + VM appearance factors, basis projection, colour MLP."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.config import TensoRFConfig
from tensorf.data.rays import Rays
from tensorf.fields import vm
from tensorf.fields.mlp import ColorMLP
from tensorf.render import (
    RenderOutput,
    composite,
    compositing_weights,
    ray_box_interval,
    stratified_samples,
    top_k_samples,
)

GRID_KEYS = ("density", "appearance")


@dataclasses.dataclass(frozen=True)
class TensoRF:
    config: TensoRFConfig

    # --- schedule ---------------------------------------------------------------------------

    @property
    def aabb(self) -> np.ndarray:
        return np.asarray(self.config.aabb, np.float32)

    def resolution_at(self, step: int) -> tuple[int, int, int]:
        c = self.config
        done = sum(1 for s in c.upsample_steps if s <= step)
        if done == 0:
            return vm.voxels_to_resolution(c.n_voxels_init, self.aabb)
        return vm.upsample_schedule(c.n_voxels_init, c.n_voxels_final, len(c.upsample_steps), self.aabb)[done - 1]

    def num_samples(self, resolution) -> int:
        """Samples per ray: the box diagonal at step_ratio voxels per sample (official nSamples)."""
        size = self.aabb[1] - self.aabb[0]
        voxel = size / (np.asarray(resolution) - 1)
        step = float(np.mean(voxel)) * self.config.step_ratio
        return min(self.config.max_samples, int(math.ceil(float(np.linalg.norm(size)) / step)))

    # --- parameters -------------------------------------------------------------------------

    @property
    def _mlp(self) -> ColorMLP:
        c = self.config
        return ColorMLP(hidden=c.mlp_hidden, feature_pe=c.feature_pe, view_pe=c.view_pe, dtype=self._dtype)

    @property
    def _dtype(self):
        return jnp.dtype(self.config.compute_dtype)

    def init(self, key: jax.Array, resolution) -> dict:
        c = self.config
        kd, ka, kb, km = jax.random.split(key, 4)
        n_app = sum(c.appearance_components)
        mlp_params = self._mlp.init(km, jnp.zeros((1, c.appearance_features)), jnp.zeros((1, 3)))
        return {
            "density": vm.init_vm(kd, resolution, c.density_components, c.init_scale),
            "appearance": vm.init_vm(ka, resolution, c.appearance_components, c.init_scale),
            # torch.nn.Linear(n_app, 27, bias=False) default init: U(+-1/sqrt(fan_in)).
            "basis": jax.random.uniform(kb, (n_app, c.appearance_features), jnp.float32, -1, 1) / math.sqrt(n_app),
            "mlp": mlp_params,
        }

    def resize(self, params: dict, resolution) -> dict:
        return {**params, **{k: vm.resize_vm(params[k], resolution) for k in GRID_KEYS}}

    def param_groups(self, params: dict) -> dict:
        return {k: jax.tree.map(lambda _: "grid" if k in GRID_KEYS else "mlp", v) for k, v in params.items()}

    def regularizer(self, params: dict) -> jax.Array:
        return self.config.l1_weight * vm.l1_norm(params["density"])

    # --- fields -----------------------------------------------------------------------------

    def _unit(self, xyz: jax.Array) -> jax.Array:
        lo, hi = jnp.asarray(self.aabb[0]), jnp.asarray(self.aabb[1])
        return (xyz - lo) / (hi - lo)

    def density(self, params: dict, xyz: jax.Array) -> jax.Array:
        """Volume density (M,) at world points xyz (M, 3) inside the box."""
        feats = vm.vm_features(params["density"], self._unit(xyz), self._dtype)
        raw = sum(jnp.sum(f, axis=-1) for f in feats).astype(jnp.float32)
        return jax.nn.softplus(raw + self.config.density_shift)

    def color(self, params: dict, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        """RGB (M, 3) at world points xyz (M, 3) seen along unit directions viewdirs (M, 3)."""
        feats = jnp.concatenate(vm.vm_features(params["appearance"], self._unit(xyz), self._dtype), axis=-1)
        feats = feats @ params["basis"].astype(self._dtype)
        return self._mlp.apply(params["mlp"], feats, viewdirs)

    # --- rendering --------------------------------------------------------------------------

    def render(self, params: dict, rays: Rays, key: jax.Array | None) -> RenderOutput:
        c = self.config
        b = rays.origins.shape[0]
        n = self.num_samples(params["density"].resolution)
        t0, t1 = ray_box_interval(rays, jnp.asarray(self.aabb), *c.near_far)
        t, spacing = stratified_samples(t0, t1, n, key)
        pts = rays.origins[:, None, :] + t[..., None] * rays.directions[:, None, :]
        sigma = self.density(params, pts.reshape(-1, 3)).reshape(b, n)
        weights = compositing_weights(sigma, spacing * c.distance_scale)

        k = min(c.appearance_samples, n)
        idx = top_k_samples(weights, k)
        top_pts = jnp.take_along_axis(pts, idx[..., None], axis=1)
        dirs = jnp.broadcast_to(rays.directions[:, None, :], top_pts.shape)
        rgb = self.color(params, top_pts.reshape(-1, 3), dirs.reshape(-1, 3)).reshape(b, k, 3)
        return composite(weights, t, idx, rgb)
