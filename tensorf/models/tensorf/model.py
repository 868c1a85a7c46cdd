"""TensoRF (Chen et al. 2022): tensor-factor density and appearance, basis projection, colour head.

This module is what runs inside jit: parameters, fields and rendering. The host-side schedule
(upsampling, mask updates, box shrink, work budgets, ray filtering) is `schedule.py`.

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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.config import TensoRFConfig
from tensorf.data.rays import Rays
from tensorf.data.views import Scene
from tensorf.depth_loss import ds_nerf_loss
from tensorf.errors import UserError
from tensorf.fields import cp, occupancy, vm
from tensorf.fields.interp import trilinear
from tensorf.fields.mlp import ColorMLP
from tensorf.fields.sh import sh_color
from tensorf.intervals import Spacing, distortion_loss, interlevel_loss, propose, schlick_bias
from tensorf.render import (
    RenderOutput,
    compacted_map,
    composite,
    compositing_weights,
    contract,
    marched_samples,
    near_camera_gradient,
    ray_background,
    ray_box_interval,
    ray_uniforms,
    top_k_samples,
    unbounded_samples,
    unit_region_exit,
)

GRID_KEYS = ("density", "appearance")
"""Factors the schedule resamples (upsampling, box shrink)."""
FROZEN_KEYS = ("aabb", "occupancy")
PROPOSAL_KEY = "proposal"
"""Proposal density fields (a tuple of VM factors, one per level): grids in the optimizer's sense,
at a fixed resolution over the scene's box, untouched by the schedule."""


class Samples(NamedTuple):
    """A batch's samples: t (B, N) distances; step: spacing, a scalar or (B, N) (lengths in the
    field's space); pts (B, N, 3) in the field's space; live (B, N) inside the box and mask.
    With proposals also edges (B, N + 1), the samples' bins in normalised distance, and history:
    each proposal level's (edges, weights)."""

    t: jax.Array
    step: jax.Array
    pts: jax.Array
    live: jax.Array
    edges: jax.Array | None = None
    history: tuple = ()

_VM = SimpleNamespace(features=vm.vm_features, volume=vm.summed_volume, resample=vm.resample_vm,
                      resample_program=vm.resample_program, l1=vm.l1_norm,
                      tv=vm.tv_planes, ortho=vm.orthogonality)
_CP = SimpleNamespace(features=cp.cp_features, volume=cp.summed_volume, resample=cp.resample_cp,
                      resample_program=cp.resample_program, l1=cp.l1_norm,
                      tv=cp.tv_planes, ortho=cp.orthogonality)


@dataclasses.dataclass(frozen=True)
class TensoRF:
    config: TensoRFConfig
    """Resolved: no `auto` choices left (build_model resolves them for the backend)."""
    scene: Scene
    density_budget: float | None = None
    """Share of a training batch's B*N samples given density slots (None: every sample)."""
    shade_budget: float | None = None
    """Share of a training batch's B*k top-k samples given colour slots (None: every one)."""

    def __post_init__(self):
        c = self.config
        if "auto" in (c.density_lookup, c.near_gradient_distance, c.tv_weight_density, c.tv_weight_appearance,
                      c.l1_weight, c.l1_weight_rest):
            raise ValueError("TensoRF needs a config with its auto choices resolved (config.resolve)")
        if c.proposal_samples and len(c.proposal_resolution) != len(c.proposal_samples):
            raise UserError(f"--model.proposal-resolution needs one entry per proposal level: got "
                            f"{len(c.proposal_resolution)} for --model.proposal-samples {list(c.proposal_samples)}")

    @property
    def ops(self):
        """The tensor decomposition's functions (features, volume, resample, regularisers)."""
        return _CP if self.config.field == "cp" else _VM

    @property
    def _dtype(self):
        return jnp.dtype(self.config.compute_dtype)

    # --- shapes -----------------------------------------------------------------------------

    def initial_state(self) -> dict:
        res = vm.voxels_to_resolution(self.config.n_voxels_init, np.asarray(self.scene.aabb, np.float32))
        return {"resolution": list(res), "level": 0, "mask": [1, 1, 1], "mask_updates": 0, "budgets": None}

    def for_state(self, state: dict) -> "TensoRF":
        budgets = state.get("budgets") or {}
        return dataclasses.replace(self, density_budget=budgets.get("density"), shade_budget=budgets.get("shade"))

    def num_samples(self, resolution) -> int:
        """Samples per ray: with proposals, proposal_final_samples; else the grid diagonal at
        step_ratio voxels per sample (official nSamples), capped at max_samples."""
        if self.config.proposal_samples:
            return self.config.proposal_final_samples
        diag_voxels = float(np.linalg.norm(np.asarray(resolution, np.float64) - 1))
        return min(self.config.max_samples, int(math.ceil(diag_voxels / self.config.step_ratio)))

    def loss_weights(self, step: jax.Array, decay: jax.Array) -> dict[str, jax.Array]:
        """L1 drops to its second weight at the first mask update; the TV weights decay with the
        learning rate (official train.py multiplies them by lr_factor every step)."""
        c = self.config
        first_mask = min(c.mask_update_steps, default=math.inf)
        weights = {
            "l1": jnp.where(step < first_mask, c.l1_weight, c.l1_weight_rest).astype(jnp.float32),
            "tv_density": jnp.float32(c.tv_weight_density) * decay,
            "tv_appearance": jnp.float32(c.tv_weight_appearance) * decay,
            "ortho": jnp.float32(c.ortho_weight),
        }
        if c.proposal_samples:
            progress = jnp.clip(step / max(c.proposal_anneal_steps, 1), 0.0, 1.0)
            weights["anneal"] = schlick_bias(progress, 10.0).astype(jnp.float32)
        return weights

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
            "aabb": jnp.asarray(self.scene.aabb, jnp.float32),
            "occupancy": jnp.ones(tuple(state["mask"]), jnp.float32),
        }
        if c.shading == "mlp":
            params["mlp"] = self._mlp.init(km, jnp.zeros((1, n_feat)), jnp.zeros((1, 3)))
        if c.proposal_samples:
            keys = jax.random.split(jax.random.fold_in(key, 1), len(c.proposal_samples))
            params[PROPOSAL_KEY] = tuple(vm.init_vm(k, (r, r, r), (c.proposal_components,) * 3, c.init_scale)
                                         for k, r in zip(keys, c.proposal_resolution))
        return params

    def param_groups(self, params: dict) -> dict:
        def group(k):
            return "grid" if k in GRID_KEYS or k == PROPOSAL_KEY else "frozen" if k in FROZEN_KEYS else "mlp"

        return {k: jax.tree.map(lambda _: group(k), v) for k, v in params.items()}

    def training_loss(self, params: dict, rays: Rays, colors: jax.Array, keys: jax.Array, weights: dict):
        """Photometric MSE plus the regularisers and, with proposals, the interlevel and
        distortion losses; also {"mse", "dropped": live samples the budgets dropped, and the
        proposal losses unweighted}."""
        c = self.config
        out, info = self._render(params, rays, keys, compact=True, anneal=weights.get("anneal", 1.0))
        mse = jnp.mean((out.rgb - colors) ** 2)
        loss = mse + self.regularizer(params, weights)
        aux = {"mse": mse, "dropped": jnp.sum(out.dropped)}
        if rays.target_depth is not None and c.depth_weight:
            lengths = jnp.broadcast_to(info["step"], info["t"].shape)
            aux["depth"] = ds_nerf_loss(info["weights"], info["t"], lengths, rays.target_depth, c.depth_sigma)
            loss += c.depth_weight * aux["depth"]
        if c.proposal_samples:
            aux["interlevel"] = interlevel_loss(info["edges"], info["weights"], info["history"])
            aux["distortion"] = jnp.mean(distortion_loss(info["edges"], info["weights"]))
            loss += c.interlevel_weight * aux["interlevel"] + c.distortion_weight * aux["distortion"]
        return loss, aux

    def regularizer(self, params: dict, weights: dict) -> jax.Array:
        c, ops = self.config, self.ops
        d, a = params["density"], params["appearance"]
        # Terms whose weight is zero by config are left out of the program: XLA keeps 0 * x (it
        # could be NaN), so a TV of the appearance planes would cost a pass over them every step.
        terms = (
            (c.l1_weight or c.l1_weight_rest, lambda: weights["l1"] * ops.l1(d)),
            (c.tv_weight_density, lambda: weights["tv_density"] * ops.tv(d)),
            (c.tv_weight_appearance, lambda: weights["tv_appearance"] * ops.tv(a)),
            (c.ortho_weight, lambda: weights["ortho"] * (ops.ortho(d) + ops.ortho(a))),
        )
        return sum((term() for weight, term in terms if weight), jnp.float32(0.0))

    # --- fields -----------------------------------------------------------------------------

    @staticmethod
    def unit(params: dict, xyz: jax.Array) -> jax.Array:
        """Points (..., 3) of the field's space (world; contracted in an unbounded scene) in box
        units: [0, 1]^3 inside the current box."""
        aabb = jax.lax.stop_gradient(params["aabb"])
        return (xyz - aabb[0]) / (aabb[1] - aabb[0])

    def density(self, params: dict, xyz: jax.Array) -> jax.Array:
        """Volume density (M,) per world unit at world points xyz (M, 3), as rendering sees it:
        distance_scale applied, zero outside the box and, once a mask exists, outside the mask
        (official compute_alpha)."""
        unit = self.unit(params, xyz)
        mask = jax.lax.stop_gradient(params["occupancy"])
        if mask.size > 1:
            inside = occupancy.lookup(mask, unit)  # its own test covers the box
        else:
            inside = jnp.all((unit >= 0) & (unit <= 1), axis=-1)
        return jnp.where(inside, self._field_density(params, xyz), 0.0) * self.config.distance_scale

    def _field_density(self, params: dict, xyz: jax.Array) -> jax.Array:
        """The density factors' field (M,) at world points (M, 3), with no mask applied."""
        factors, unit = params["density"], self.unit(params, xyz)
        lookup = self.config.density_lookup
        if lookup == "mixed":
            # Which is faster depends on samples per voxel: benchmarks/results.md (volume lookup).
            lookup = "volume" if 16 * xyz.shape[0] >= math.prod(factors.resolution) else "factors"
        if lookup == "volume":
            raw = trilinear(self.ops.volume(factors), unit)
        else:
            raw = sum(jnp.sum(f, axis=-1) for f in self.ops.features(factors, unit))
        return self._activate(raw)

    def _activate(self, raw: jax.Array) -> jax.Array:
        """Density from summed density features (official fea2denseAct): relu, or softplus after
        density_shift. The model's field and the proposal fields share it."""
        if self.config.density_activation == "relu":
            return jax.nn.relu(raw)
        return jax.nn.softplus(raw + self.config.density_shift)

    def color(self, params: dict, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        """RGB (M, 3) at world points xyz (M, 3) seen along unit directions viewdirs (M, 3)."""
        feats = jnp.concatenate(self.ops.features(params["appearance"], self.unit(params, xyz)), -1)
        # Half precision pays in the matrix products (this one and the MLP's), not in the grid's
        # gathers: those stay float32 (vm_features).
        feats = jnp.dot(feats.astype(self._dtype), params["basis"].astype(self._dtype),
                        preferred_element_type=jnp.float32)
        if self.config.shading == "sh":
            return sh_color(feats, viewdirs)
        return self._mlp.apply(params["mlp"], feats, viewdirs)

    # --- rendering --------------------------------------------------------------------------

    def sample_step(self, params: dict) -> jax.Array:
        """Distance between samples: step_ratio voxels of the current grid (official stepSize),
        or longer when max_samples caps N, so that N samples still span the box diagonal."""
        res = np.asarray(params["density"].resolution)
        size = jax.lax.stop_gradient(params["aabb"][1] - params["aabb"][0])
        voxel_step = jnp.mean(size / (res - 1)) * self.config.step_ratio
        return jnp.maximum(voxel_step, jnp.linalg.norm(size) / self.num_samples(res))

    def _proposal_density(self, params: dict, level: int, xyz: jax.Array) -> jax.Array:
        """Density (M,) of proposal field `level` at points (M, 3) of the field's space; zero
        outside the scene's box, over which the proposal grids lie."""
        box = np.asarray(self.scene.aabb, np.float32)
        unit = (xyz - box[0]) / (box[1] - box[0])
        raw = sum(jnp.sum(f, axis=-1) for f in vm.vm_features(params[PROPOSAL_KEY][level], unit))
        return jnp.where(jnp.all((unit >= 0) & (unit <= 1), axis=-1), self._activate(raw), 0.0)

    def _spacing(self, params: dict, rays: Rays) -> Spacing:
        """Where each ray's samples may lie: unbounded, all of the ray (linear to the unit
        region's exit, then even in disparity); bounded, the ray's chord through the box."""
        near, far = self.scene.near_far
        if self.scene.contraction:
            return Spacing.disparity_beyond(near, far, unit_region_exit(rays, self.scene.contraction))
        t0, t1 = ray_box_interval(rays, jax.lax.stop_gradient(params["aabb"]), near, far)
        return Spacing.linear(t0, jnp.maximum(t0, t1))

    def _points(self, rays: Rays, t: jax.Array) -> jax.Array:
        """Points (B, N, 3) of the field's space (contracted in an unbounded scene) at t (B, N)."""
        pts = rays.origins[:, None, :] + t[..., None] * rays.directions[:, None, :]
        return contract(pts, self.scene.contraction, self.scene.shell) if self.scene.contraction else pts

    def _lengths(self, rays: Rays, t_edges: jax.Array) -> jax.Array:
        """Length (B, N) in the field's space of each bin between edges t_edges (B, N + 1). In an
        unbounded scene it is measured in the contracted space the field lives in: in world units
        the far bins are hundreds long, opaque from the first step, and the model paints every
        view onto the backdrop before any foreground forms."""
        if not self.scene.contraction:
            return t_edges[:, 1:] - t_edges[:, :-1]
        ends = self._points(rays, t_edges)
        return jnp.linalg.norm(ends[:, 1:] - ends[:, :-1], axis=-1)

    def _bins(self, rays: Rays, t_edges: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Samples at the middle of the bins between t_edges (B, N + 1): t (B, N), lengths and
        points in the field's space."""
        t = 0.5 * (t_edges[:, 1:] + t_edges[:, :-1])
        return t, self._lengths(rays, t_edges), self._points(rays, t)

    def _proposed_samples(self, params: dict, rays: Rays, keys, anneal) -> tuple:
        """Proposal sampling: t, step, pts of the final bins, their edges and each level's
        (edges, weights)."""
        c = self.config
        b = rays.origins.shape[0]
        spacing = self._spacing(params, rays)
        levels = len(c.proposal_samples)
        jitter = None if keys is None else jax.vmap(lambda k: jax.random.uniform(k, (levels + 1,)))(keys)

        def weights_of(level: int, edges: jax.Array) -> jax.Array:
            _, step, pts = self._bins(rays, spacing.t(edges))
            sigma = self._proposal_density(params, level, pts.reshape(-1, 3)).reshape(edges.shape[0], -1)
            return compositing_weights(sigma, step * c.distance_scale)

        edges, history = propose(c.proposal_samples, c.proposal_final_samples, weights_of, jitter, anneal, batch=b,
                                 padding=c.proposal_padding)
        return *self._bins(rays, spacing.t(edges)), edges, tuple(history)

    def samples(self, params: dict, rays: Rays, keys, anneal: jax.Array | float = 1.0,
                proposals: bool = True) -> Samples:
        """The batch's samples (see Samples): drawn by the proposals when the model has them
        (and `proposals`), else marched at a fixed step (bounded) or spread linearly then in
        disparity (unbounded); live: inside the box and, once a mask exists, in occupied cells.
        anneal: the proposal resampling's sharpness (loss_weights' "anneal"; 1 outside training)."""
        edges, history = None, ()
        proposed = proposals and bool(self.config.proposal_samples)
        if proposed:
            t, step, pts, edges, history = self._proposed_samples(params, rays, keys, anneal)
        elif self.scene.contraction:
            n = self.num_samples(params["density"].resolution)
            near, far = self.scene.near_far
            t, t_edges = unbounded_samples(near, far, unit_region_exit(rays, self.scene.contraction), n,
                                           ray_uniforms(keys))
            step, pts = self._lengths(rays, t_edges), self._points(rays, t)
        if proposed or self.scene.contraction:
            unit = self.unit(params, pts)
            live = jnp.all((unit >= 0) & (unit <= 1), axis=-1)  # unbounded: all of space, unless the box shrank
        else:
            n = self.num_samples(params["density"].resolution)
            t0, t1 = ray_box_interval(rays, jax.lax.stop_gradient(params["aabb"]), *self.scene.near_far)
            # A fixed step from the box entry (official sample_ray), not N samples spread over each
            # chord: as good and faster (benchmarks/results.md, sample placement).
            step = self.sample_step(params)
            t, live = marched_samples(t0, t1, step, n, ray_uniforms(keys))
            pts = rays.origins[:, None, :] + t[..., None] * rays.directions[:, None, :]
        mask = jax.lax.stop_gradient(params["occupancy"])
        if mask.size > 1:
            b, n = t.shape
            live = live & occupancy.lookup(mask, self.unit(params, pts.reshape(-1, 3))).reshape(b, n)
        return Samples(t, step, pts, live, edges, history)

    def render(self, params: dict, rays: Rays, keys: jax.Array | None) -> RenderOutput:
        # Only training batches (random rays, keys given) are compacted: the budgets are sized for
        # them, and an image chunk (rows of one view) can hold far more live samples, so eval
        # (keys=None) evaluates densely. Either way the same samples are shaded: the image is the same.
        return self._render(params, rays, keys, compact=keys is not None)[0]

    def level_depths(self, params: dict, rays: Rays) -> jax.Array:
        """Where each proposal level and the model put a ray's weight: the weighted mean
        normalised distance s in [0, 1] (B, L + 1), proposals first, in a deterministic render
        (the eval view's strip in TensorBoard). Only for a model with proposals."""
        _, info = self._render(params, rays, None, compact=False)
        levels = [*info["history"], (info["edges"], info["weights"])]
        return jnp.stack([jnp.sum(w * 0.5 * (e[:, 1:] + e[:, :-1]), -1) / jnp.maximum(jnp.sum(w, -1), 1e-6)
                          for e, w in levels], axis=-1)

    def live_fractions(self, params: dict, rays: Rays, keys: jax.Array | None) -> dict[str, jax.Array]:
        """Shares of this batch's samples that need density (the mask leaves them live) and
        colour (top-k samples above shade_threshold): what the budgets must hold."""
        info = self._render(params, rays, keys, compact=False)[1]
        return {"density": info["density"], "shade": info["shade"]}

    def _render(self, params: dict, rays: Rays, keys, compact: bool, anneal: jax.Array | float = 1.0
                ) -> tuple[RenderOutput, dict]:
        """The render and what else training and the budgets need: the shares of live and shaded
        samples, the compositing weights and, with proposals, the bins and proposal history."""
        c = self.config
        b = rays.origins.shape[0]
        samples = self.samples(params, rays, keys, anneal)
        t, step, pts, live = samples.t, samples.step, samples.pts, samples.live
        n = t.shape[1]
        dropped = jnp.zeros((b,), jnp.float32)
        has_mask = params["occupancy"].size > 1
        if has_mask and compact and self.density_budget is not None:
            # Batch-level compaction won over per-ray slots and over masking after a dense
            # evaluation (benchmarks/results.md). Samples run front to back, so a batch over budget
            # loses the deepest live samples of its busiest rays, the ones most often hidden.
            budget = max(1, math.ceil(self.density_budget * b * n))
            sigma, kept = compacted_map(lambda x: self._field_density(params, x), (pts,), live, budget)
            dropped += jnp.sum(live & ~kept, axis=-1)
        else:
            sigma = jnp.where(live, self._field_density(params, pts.reshape(-1, 3)).reshape(b, n), 0.0)
        sigma = near_camera_gradient(sigma, t, c.near_gradient_distance)
        weights = compositing_weights(sigma, step * c.distance_scale)

        idx = top_k_samples(weights, c.appearance_samples)
        k = idx.shape[1]
        top_pts = jnp.take_along_axis(pts, idx[..., None], axis=1)
        dirs = jnp.broadcast_to(rays.directions[:, None, :], top_pts.shape)
        # Official app_mask: colour matters only where a sample's weight shows in the pixel; the
        # same rule in training and eval, whether or not the shaded samples are compacted.
        shade = jax.lax.stop_gradient(jnp.take_along_axis(weights, idx, axis=-1)) > c.shade_threshold
        if has_mask and compact and self.shade_budget is not None:
            # Top-k samples run heaviest first, so a batch over budget loses its faintest ones.
            budget = max(1, math.ceil(self.shade_budget * b * k))
            rgb, shaded = compacted_map(lambda x, d: self.color(params, x, d), (top_pts, dirs), shade, budget)
            dropped += jnp.sum(shade & ~shaded, axis=-1)
        else:
            rgb = self.color(params, top_pts.reshape(-1, 3), dirs.reshape(-1, 3)).reshape(b, k, 3)
            shaded = shade
        rgb = near_camera_gradient(rgb, jnp.take_along_axis(t, idx, axis=-1)[..., None], c.near_gradient_distance)
        out = composite(weights, t, idx, rgb, shaded, dropped, ray_background(rays, self.scene.background),
                        rays.exposure)
        return out, {"density": jnp.mean(live), "shade": jnp.mean(shade), "weights": weights, "t": t, "step": step,
                     "edges": samples.edges, "history": samples.history}
