"""TensoRF (Chen et al. 2022): tensor-factor density and appearance, basis projection, colour head.

Trainable params: "density", "appearance" (VM or CP factors), "basis", "mlp". Frozen params (never
updated by the optimizer, checkpointed with the rest): "aabb" (2, 3), the current box, and
"occupancy", the alpha mask over that box ((1, 1, 1) until the first mask update, which means
"no mask yet" and costs nothing).

The host-side model state (JSON) records what shapes and schedule events are in force:
{"resolution", "level" (upsamplings done), "mask" (mask shape), "mask_updates", "budgets"}, where
"budgets" ({"density", "shade"} shares of a batch's samples, or None) sizes the compacted work.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.config import TensoRFConfig
from tensorf.data.rays import Rays
from tensorf.fields import cp, occupancy, vm
from tensorf.fields.interp import trilinear
from tensorf.fields.mlp import ColorMLP
from tensorf.fields.sh import sh_color
from tensorf.render import (
    RenderOutput,
    compacted_map,
    composite,
    compositing_weights,
    ray_box_interval,
    stratified_samples,
    top_k_samples,
)

GRID_KEYS = ("density", "appearance")
FROZEN_KEYS = ("aabb", "occupancy")

_VM = SimpleNamespace(features=vm.vm_features, volume=vm.summed_volume, resample=vm.resample_vm, l1=vm.l1_norm,
                      tv=vm.tv_planes, ortho=vm.orthogonality)
_CP = SimpleNamespace(features=cp.cp_features, volume=cp.summed_volume, resample=cp.resample_cp, l1=cp.l1_norm,
                      tv=cp.tv_planes, ortho=cp.orthogonality)


@dataclasses.dataclass(frozen=True)
class TensoRF:
    config: TensoRFConfig
    density_budget: float | None = None
    """Share of a training batch's B*N samples given density slots (None: every sample)."""
    shade_budget: float | None = None
    """Share of a training batch's B*k top-k samples given colour slots (None: every one)."""

    @property
    def _ops(self):
        return _CP if self.config.field == "cp" else _VM

    @property
    def _dtype(self):
        return jnp.dtype(self.config.compute_dtype)

    # --- schedule ---------------------------------------------------------------------------

    def voxels_at_level(self, level: int) -> int:
        c = self.config
        if level == 0:
            return c.n_voxels_init
        counts = np.exp(np.linspace(math.log(c.n_voxels_init), math.log(c.n_voxels_final), len(c.upsample_steps) + 1))
        return int(round(counts[level]))

    def initial_state(self) -> dict:
        res = vm.voxels_to_resolution(self.config.n_voxels_init, np.asarray(self.config.aabb, np.float32))
        return {"resolution": list(res), "level": 0, "mask": [1, 1, 1], "mask_updates": 0, "budgets": None}

    def for_state(self, state: dict) -> "TensoRF":
        budgets = state.get("budgets") or {}
        return dataclasses.replace(self, density_budget=budgets.get("density"), shade_budget=budgets.get("shade"))

    def num_samples(self, resolution) -> int:
        """Samples per ray: the grid diagonal at step_ratio voxels per sample (official nSamples)."""
        diag_voxels = float(np.linalg.norm(np.asarray(resolution, np.float64) - 1))
        return min(self.config.max_samples, int(math.ceil(diag_voxels / self.config.step_ratio)))

    def loss_weights(self, step: float) -> dict[str, float]:
        c = self.config
        first_mask = min(c.mask_update_steps, default=math.inf)
        return {
            "l1": c.l1_weight if step < first_mask else c.l1_weight_rest,
            "tv_density": c.tv_weight_density,
            "tv_appearance": c.tv_weight_appearance,
            "ortho": c.ortho_weight,
        }

    # --- parameters -------------------------------------------------------------------------

    @property
    def _mlp(self) -> ColorMLP:
        c = self.config
        return ColorMLP(hidden=c.mlp_hidden, feature_pe=c.feature_pe, view_pe=c.view_pe, dtype=self._dtype)

    def _n_features(self) -> int:
        return 27 if self.config.shading == "sh" else self.config.appearance_features

    def init(self, key: jax.Array, state: dict | None = None) -> dict:
        c = self.config
        state = state or self.initial_state()
        res = tuple(state["resolution"])
        kd, ka, kb, km = jax.random.split(key, 4)
        if c.field == "cp":
            density = cp.init_cp(kd, res, c.cp_density_components, c.init_scale)
            appearance = cp.init_cp(ka, res, c.cp_appearance_components, c.init_scale)
            n_app = c.cp_appearance_components
        else:
            density = vm.init_vm(kd, res, c.density_components, c.init_scale)
            appearance = vm.init_vm(ka, res, c.appearance_components, c.init_scale)
            n_app = sum(c.appearance_components)
        n_feat = self._n_features()
        params = {
            "density": density,
            "appearance": appearance,
            # torch.nn.Linear(n_app, n_feat, bias=False) default init: U(+-1/sqrt(fan_in)).
            "basis": jax.random.uniform(kb, (n_app, n_feat), jnp.float32, -1, 1) / math.sqrt(n_app),
            "aabb": jnp.asarray(c.aabb, jnp.float32),
            "occupancy": jnp.ones(tuple(state["mask"]), jnp.float32),
        }
        if c.shading == "mlp":
            params["mlp"] = self._mlp.init(km, jnp.zeros((1, n_feat)), jnp.zeros((1, 3)))
        return params

    def param_groups(self, params: dict) -> dict:
        def group(k):
            return "grid" if k in GRID_KEYS else "frozen" if k in FROZEN_KEYS else "mlp"

        return {k: jax.tree.map(lambda _: group(k), v) for k, v in params.items()}

    def regularizer(self, params: dict, weights: dict) -> jax.Array:
        ops = self._ops
        d, a = params["density"], params["appearance"]
        return (
            weights["l1"] * ops.l1(d)
            + weights["tv_density"] * ops.tv(d)
            + weights["tv_appearance"] * ops.tv(a)
            + weights["ortho"] * (ops.ortho(d) + ops.ortho(a))
        )

    # --- fields -----------------------------------------------------------------------------

    @staticmethod
    def _unit(params: dict, xyz: jax.Array) -> jax.Array:
        aabb = jax.lax.stop_gradient(params["aabb"])
        return (xyz - aabb[0]) / (aabb[1] - aabb[0])

    def density(self, params: dict, xyz: jax.Array) -> jax.Array:
        """Volume density (M,) at world points xyz (M, 3) inside the box."""
        factors, unit = params["density"], self._unit(params, xyz)
        lookup = self.config.density_lookup
        if lookup == "auto":
            # Measured on the 2-core CPU at 128^3 (0.55M samples): factors 408 ms, volume 90 ms
            # (fwd+bwd); at 300^3 (0.76M samples): factors 607 ms, volume 958 ms. On an H100 the
            # volume step timed faster too, but a 2.5-minute lego training run with it made 127
            # steps against 2768 with the factors (cause not yet found), so accelerators keep the
            # factors until that is understood (benchmarks/results.md).
            many = 16 * xyz.shape[0] >= math.prod(factors.resolution)
            lookup = "volume" if many and jax.default_backend() == "cpu" else "factors"
        if lookup == "volume":
            raw = trilinear(self._ops.volume(factors, self._dtype), unit)
        else:
            raw = sum(jnp.sum(f, axis=-1) for f in self._ops.features(factors, unit, self._dtype))
        return jax.nn.softplus(raw.astype(jnp.float32) + self.config.density_shift)

    def color(self, params: dict, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        """RGB (M, 3) at world points xyz (M, 3) seen along unit directions viewdirs (M, 3)."""
        feats = jnp.concatenate(self._ops.features(params["appearance"], self._unit(params, xyz), self._dtype), -1)
        feats = feats @ params["basis"].astype(self._dtype)
        if self.config.shading == "sh":
            return sh_color(feats, viewdirs)
        return self._mlp.apply(params["mlp"], feats, viewdirs)

    # --- rendering --------------------------------------------------------------------------

    def _samples(self, params: dict, rays: Rays, key):
        n = self.num_samples(params["density"].resolution)
        t0, t1 = ray_box_interval(rays, jax.lax.stop_gradient(params["aabb"]), *self.config.near_far)
        t, spacing = stratified_samples(t0, t1, n, key)
        pts = rays.origins[:, None, :] + t[..., None] * rays.directions[:, None, :]
        return t, spacing, pts

    def _live(self, params: dict, pts: jax.Array, spacing: jax.Array) -> jax.Array:
        """(B, N) samples inside the box and, once a mask exists, in occupied cells."""
        b, n = pts.shape[:2]
        live = jnp.broadcast_to((spacing > 0)[:, None], (b, n))
        mask = jax.lax.stop_gradient(params["occupancy"])
        if mask.size > 1:
            live = live & occupancy.lookup(mask, self._unit(params, pts.reshape(-1, 3))).reshape(b, n)
        return live

    def render(self, params: dict, rays: Rays, key: jax.Array | None) -> RenderOutput:
        # Only training batches (random rays, key given) are compacted: the budgets are sized for
        # them, and an image chunk (rows of one view) can hold far more live samples, so eval
        # (key=None) evaluates densely.
        return self._render(params, rays, key, compact=key is not None)[0]

    def live_fractions(self, params: dict, rays: Rays, key: jax.Array | None) -> dict[str, jax.Array]:
        """Shares of this batch's samples that need density (the mask leaves them live) and
        colour (top-k samples above shade_threshold): what the budgets must hold."""
        return self._render(params, rays, key, compact=False)[1]

    def _render(self, params: dict, rays: Rays, key, compact: bool) -> tuple[RenderOutput, dict]:
        c = self.config
        b = rays.origins.shape[0]
        t, spacing, pts = self._samples(params, rays, key)
        n = t.shape[1]
        live = self._live(params, pts, spacing)
        dropped = jnp.zeros((b,), jnp.float32)
        has_mask = params["occupancy"].size > 1
        if has_mask and compact and self.density_budget is not None:
            # Batch-level compaction won over per-ray slots (the busiest ray needs ~all N slots)
            # and over masking after a dense evaluation (no saving): benchmarks/results.md.
            budget = max(1, math.ceil(self.density_budget * b * n))
            sigma, kept = compacted_map(lambda x: self.density(params, x), (pts.reshape(-1, 3),), live.reshape(-1), budget)
            sigma = sigma.reshape(b, n)
            dropped += jnp.sum(live & ~kept.reshape(b, n), axis=-1)
        else:
            sigma = jnp.where(live, self.density(params, pts.reshape(-1, 3)).reshape(b, n), 0.0)
        weights = compositing_weights(sigma, spacing * c.distance_scale)

        idx = top_k_samples(weights, c.appearance_samples)
        k = idx.shape[1]
        top_pts = jnp.take_along_axis(pts, idx[..., None], axis=1)
        dirs = jnp.broadcast_to(rays.directions[:, None, :], top_pts.shape)
        # Official app_mask: colour matters only where a sample's weight shows in the pixel.
        shade = jax.lax.stop_gradient(jnp.take_along_axis(weights, idx, axis=-1)) > c.shade_threshold
        if has_mask and compact and self.shade_budget is not None:
            # Rank-major order (every ray's heaviest sample, then every ray's second, ...), so
            # that a batch over budget loses its faintest samples rather than its last rays.
            budget = max(1, math.ceil(self.shade_budget * b * k))
            rgb, kept = compacted_map(
                lambda x, d: self.color(params, x, d),
                (top_pts.swapaxes(0, 1).reshape(-1, 3), dirs.swapaxes(0, 1).reshape(-1, 3)),
                shade.T.reshape(-1),
                budget,
            )
            rgb = rgb.reshape(k, b, 3).swapaxes(0, 1)
            shaded = kept.reshape(k, b).T
            dropped += jnp.sum(shade & ~shaded, axis=-1)
        else:
            rgb = self.color(params, top_pts.reshape(-1, 3), dirs.reshape(-1, 3)).reshape(b, k, 3)
            shaded = None
        out = composite(weights, t, idx, rgb, shaded=shaded, dropped=dropped)
        return out, {"density": jnp.mean(live), "shade": jnp.mean(shade)}

    def budgets(self, params: dict, batches: list[Rays]) -> dict[str, float] | None:
        """Work budgets for training batches like `batches`: the largest share seen plus 10%
        headroom, rounded up to 1/256, unless the config fixes them. None (evaluate densely) until
        a mask exists or when compaction is off."""
        c = self.config
        compact = c.compaction == "on" or (c.compaction == "auto" and jax.default_backend() == "cpu")
        if params["occupancy"].size <= 1 or not compact:
            return None
        fractions = jax.jit(self.live_fractions)
        seen = [fractions(params, rays, jax.random.key(i)) for i, rays in enumerate(batches)]

        def budget(name: str, fixed: float | None) -> float | None:
            if fixed is not None:
                return fixed
            share = max(float(s[name]) for s in seen)
            b = math.ceil((1.1 * share + 0.01) * 256) / 256
            return None if b >= 1.0 else b

        return {"density": budget("density", c.density_budget), "shade": budget("shade", c.shade_budget)}

    def ray_filter(self, state: dict):
        """(params, rays) -> (B,) bool of the training rays worth keeping (official
        filtering_rays): those that cross the box from the start, those that cross the mask from
        the second mask update on. None when filtering is off."""
        c = self.config
        if not c.filter_rays:
            return None
        updates = len(c.mask_update_steps)
        use_mask = updates and state["mask_updates"] >= min(2, updates)

        def hits(params: dict, rays: Rays) -> jax.Array:
            if not use_mask:
                params = {**params, "occupancy": jnp.ones((1, 1, 1), jnp.float32)}
            _, spacing, pts = self._samples(params, rays, None)
            return jnp.any(self._live(params, pts, spacing), axis=-1)

        return hits

    def describe(self, params: dict, state: dict) -> str:
        """One line on the grid, box and mask in force (printed at schedule events)."""
        line = f"grid {'x'.join(map(str, state['resolution']))}, box {np.round(np.asarray(params['aabb']), 3).tolist()}"
        if params["occupancy"].size > 1:
            line += f", mask {float(jnp.mean(params['occupancy'])):.1%} occupied"
        return line

    # --- host-side schedule events --------------------------------------------------------------

    def advance(self, params: dict, state: dict, step: int) -> tuple[dict, dict, set[str]]:
        """Apply the schedule events due by `step`: upsampling ("resize": the optimizer restarts),
        mask updates ("mask": the ray pool is re-filtered) and the box shrink ("resize" too)."""
        c = self.config
        events: set[str] = set()
        state = dict(state)
        due_masks = sum(1 for s in c.mask_update_steps if s <= step)
        while state["mask_updates"] < due_masks:
            first = state["mask_updates"] == 0
            state["mask_updates"] += 1
            alpha = self._alpha_grid(params, state["resolution"])
            if first and float(np.mean(alpha >= c.mask_threshold)) <= 1e-3:
                # An empty field (a schedule compressed into too little time) would mask out the
                # whole scene for good; wait for the next update instead.
                continue
            occupied = occupancy.occupancy_from_alpha(alpha, c.mask_threshold)
            if first and c.shrink_box:
                params, state, occupied = self._crop(params, state, occupied)
                events.add("resize")
            params, state = self._set_mask(params, state, occupied)
            events.add("mask")
        due_levels = sum(1 for s in c.upsample_steps if s <= step)
        if state["level"] < due_levels:
            state["level"] = due_levels
            res = vm.voxels_to_resolution(self.voxels_at_level(due_levels), np.asarray(params["aabb"]))
            params = self.resize(params, res)
            state["resolution"] = list(res)
            events.add("resize")
        return params, state, events

    def resize(self, params: dict, resolution) -> dict:
        pos = vm.align_corners_positions(params["density"].resolution, resolution)
        return {**params, **{k: self._ops.resample(params[k], pos) for k in GRID_KEYS}}

    def _alpha_grid(self, params: dict, resolution) -> np.ndarray:
        aabb = np.asarray(params["aabb"])
        voxel = float(np.mean((aabb[1] - aabb[0]) / (np.asarray(resolution) - 1)))
        step = voxel * self.config.step_ratio * self.config.distance_scale
        return occupancy.alpha_grid(self.density, params, aabb, tuple(resolution), step)

    def _occupied(self, params: dict, state: dict) -> np.ndarray:
        return occupancy.occupancy_from_alpha(self._alpha_grid(params, state["resolution"]), self.config.mask_threshold)

    @staticmethod
    def _set_mask(params: dict, state: dict, occupied: np.ndarray) -> tuple[dict, dict]:
        return {**params, "occupancy": jnp.asarray(occupied)}, {**state, "mask": list(occupied.shape)}

    def update_mask(self, params: dict, state: dict) -> tuple[dict, dict]:
        """Rebuild the occupancy mask from the field at the current grid resolution."""
        return self._set_mask(params, state, self._occupied(params, state))

    def shrink(self, params: dict, state: dict) -> tuple[dict, dict]:
        """Crop the grids to the occupied region (see _crop)."""
        params, state, _ = self._crop(params, state, self._occupied(params, state))
        return params, state

    def _crop(self, params: dict, state: dict, occupied: np.ndarray) -> tuple[dict, dict, np.ndarray]:
        """Crop the grids to the (dilated) occupied grid points plus one, at whole grid points, so
        the field inside the new box is exactly the old one (official shrink). Returns the new
        params and state and `occupied` cropped alike: nothing outside the crop is occupied, so
        that is the new box's mask without evaluating the field again."""
        idx = np.argwhere(occupied > 0)
        if len(idx) == 0:
            return params, state, occupied
        res = np.asarray(state["resolution"])
        lo = np.maximum(idx.min(0) - 1, 0)
        hi = np.maximum(np.minimum(idx.max(0) + 1, res - 1), lo + 1)
        aabb = np.asarray(params["aabb"])
        voxel = (aabb[1] - aabb[0]) / (res - 1)
        pos = [np.arange(lo[d], hi[d] + 1, dtype=np.float64) for d in range(3)]
        new = {**params, **{k: self._ops.resample(params[k], pos) for k in GRID_KEYS}}
        new["aabb"] = jnp.asarray(np.stack([aabb[0] + lo * voxel, aabb[0] + hi * voxel]).astype(np.float32))
        new_state = {**state, "resolution": [int(hi[d] - lo[d] + 1) for d in range(3)]}
        return new, new_state, occupied[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
