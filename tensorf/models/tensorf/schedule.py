"""TensoRF's host-side schedule: upsampling, occupancy-mask updates, the box shrink, work budgets
and ray filtering. Runs between jitted steps; changes parameter shapes, so every event it returns
means a retrace. The jittable field and renderer it drives are `model.py`."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.data.rays import Rays
from tensorf.fields import occupancy, vm
from tensorf.models.ahead import Ahead
from tensorf.models.tensorf.model import GRID_KEYS, TensoRF


@dataclasses.dataclass(frozen=True)
class TensoRFSchedule:
    model: TensoRF

    @property
    def config(self):
        return self.model.config

    def voxels_at_level(self, level: int) -> int:
        """Voxel count after `level` upsamplings: log-spaced from init to final (official)."""
        c = self.config
        if level == 0:
            return c.n_voxels_init
        counts = np.exp(np.linspace(math.log(c.n_voxels_init), math.log(c.n_voxels_final), len(c.upsample_steps) + 1))
        return int(round(counts[level]))

    def pending(self, state: dict, step: int) -> bool:
        c = self.config
        return (state["mask_updates"] < sum(1 for s in c.mask_update_steps if s <= step)
                or state["level"] < sum(1 for s in c.upsample_steps if s <= step))

    def advance(self, params: dict, state: dict, step: int) -> tuple[dict, dict, set[str]]:
        """Apply the schedule events due by `step`, mask updates first, then upsampling (official
        order). Returns the new params and state (always to be adopted: a skipped mask update is
        counted too) and the events: "resize" (shapes changed: the optimizer restarts), "mask"
        (a new mask: the ray pool is re-filtered), "empty" (a first mask update found no field to
        build a mask on and was skipped: a notice, nothing changed)."""
        c = self.config
        events: set[str] = set()
        state = dict(state)
        due_masks = sum(1 for s in c.mask_update_steps if s <= step)
        while state["mask_updates"] < due_masks:
            # The first update that builds a mask also shrinks the box (official: the first one
            # in the list); after a skipped update, that is a later one.
            first = params["occupancy"].size <= 1
            state["mask_updates"] += 1
            occupied, empty = self._occupied(params, state)
            if first and empty:
                # An empty field (a schedule compressed into too little time) would mask out the
                # whole scene for good; wait for the next update instead.
                events.add("empty")
                continue
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

    def ahead(self, params: dict, state: dict, rays: Rays) -> Ahead | None:
        """The next event: an upsampling (log-spaced voxel counts in the box in force) or a mask
        update at the grid in force, with its programs (the alpha grid's density, the resampling,
        the live fractions after it). None when no event is left.

        The first mask update's box shrink crops to what the field holds then, so its shapes are
        unknown (params and state None; its alpha grid's program is known). Guessing the crop
        early does not pay: on lego it still moved at 75% of the way to the shrink, and a wrong
        guess keeps the compiler thread ~10 s from the next event's compiles
        (benchmarks/crop_guess.py, benchmarks/results.md)."""
        c = self.config
        upsamples, masks = c.upsample_steps[state["level"]:], c.mask_update_steps[state["mask_updates"]:]
        if not upsamples and not masks:
            return None
        at = min(upsamples[:1] + masks[:1])
        shapes = jax.eval_shape(lambda p: p, params)
        state, events, programs = dict(state), set(), []
        if masks and masks[0] <= at:
            points = min(occupancy.ALPHA_CHUNK, math.prod(state["resolution"]))
            programs.append((self._density, (dict(shapes), np.zeros((points, 3), np.float32))))
            if params["occupancy"].size <= 1 and c.shrink_box:
                return Ahead(None, None, frozenset({"mask", "resize"}), tuple(programs))
            shapes["occupancy"] = jax.ShapeDtypeStruct(tuple(state["resolution"]), params["occupancy"].dtype)
            state.update(mask_updates=state["mask_updates"] + 1, mask=list(state["resolution"]))
            events.add("mask")
        if upsamples and upsamples[0] <= at:
            level = sum(1 for s in c.upsample_steps if s <= at)
            res = vm.voxels_to_resolution(self.voxels_at_level(level), np.asarray(params["aabb"]))
            pos = vm.align_corners_positions(shapes["density"].resolution, res)
            programs += [self.model.ops.resample_program(shapes[k], pos) for k in GRID_KEYS]
            shapes = jax.eval_shape(lambda p: self.resize(p, res), shapes)
            state.update(level=level, resolution=list(res))
            events.add("resize")
        if self._measures(shapes):
            programs.append((self._fractions, (shapes, rays)))
        return Ahead(shapes, state, frozenset(events), tuple(programs))

    def resize(self, params: dict, resolution) -> dict:
        pos = vm.align_corners_positions(params["density"].resolution, resolution)
        return {**params, **{k: self.model.ops.resample(params[k], pos) for k in GRID_KEYS}}

    def alpha_grid(self, params: dict, resolution) -> np.ndarray:
        """Opacity of one sample step at every vertex of a grid over the current box. Density
        outside the current mask counts as zero (official compute_alpha), so a new mask never
        brings back a region an earlier one removed."""
        aabb = np.asarray(params["aabb"])
        voxel = float(np.mean((aabb[1] - aabb[0]) / (np.asarray(resolution) - 1)))
        step = voxel * self.config.step_ratio
        return occupancy.alpha_grid(self._density, params, aabb, tuple(resolution), step)

    # The event's jitted programs, made once: a new jax.jit (or a new static function) per call
    # would find nothing compiled, ahead or before.
    @functools.cached_property
    def _density(self):
        return jax.jit(self.model.density)

    @functools.cached_property
    def _fractions(self):
        # Keys made inside: the call is then (params, rays), placed alike ahead and at the event.
        return jax.jit(lambda params, rays: self.model.live_fractions(
            params, rays, jax.random.split(jax.random.key(0), len(rays.origins))))

    @functools.cached_property
    def _hits(self) -> dict:
        return {use_mask: self._make_hits(use_mask) for use_mask in (False, True)}

    def _occupied(self, params: dict, state: dict) -> tuple[np.ndarray, bool]:
        """The mask the field gives at the grid in force, and whether the field counts as empty
        (too little opacity to build a first mask on)."""
        alpha = self.alpha_grid(params, state["resolution"])
        empty = float(np.mean(alpha >= self.config.mask_threshold)) <= 1e-3
        return occupancy.occupancy_from_alpha(alpha, self.config.mask_threshold), empty

    @staticmethod
    def _set_mask(params: dict, state: dict, occupied: np.ndarray) -> tuple[dict, dict]:
        # device_put, not jnp.asarray: that is an op, compiled anew for each mask shape.
        return {**params, "occupancy": jax.device_put(occupied)}, {**state, "mask": list(occupied.shape)}

    def update_mask(self, params: dict, state: dict) -> tuple[dict, dict]:
        """Rebuild the occupancy mask from the field at the current grid resolution."""
        return self._set_mask(params, state, self._occupied(params, state)[0])

    def shrink(self, params: dict, state: dict) -> tuple[dict, dict]:
        """Crop the grids to the occupied region (see _crop)."""
        params, state, _ = self._crop(params, state, self._occupied(params, state)[0])
        return params, state

    def _crop(self, params: dict, state: dict, occupied: np.ndarray) -> tuple[dict, dict, np.ndarray]:
        """Crop the grids to the (dilated) occupied grid points plus one, at whole grid points, so
        the field inside the new box is exactly the old one (official shrink). Returns the new
        params and state and `occupied` cropped alike: nothing outside the crop is occupied, so
        that is the new box's mask without evaluating the field again."""
        if not np.any(occupied > 0):
            return params, state, occupied
        lo, hi, aabb = self._crop_box(np.asarray(params["aabb"]), state["resolution"], occupied)
        pos = [np.arange(lo[d], hi[d] + 1, dtype=np.float64) for d in range(3)]
        new = {**params, **{k: self.model.ops.resample(params[k], pos) for k in GRID_KEYS}}
        new["aabb"] = jax.device_put(aabb)
        new_state = {**state, "resolution": [int(hi[d] - lo[d] + 1) for d in range(3)]}
        return new, new_state, occupied[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]

    def guess_crop(self, params: dict, state: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The box shrink's crop if the first mask update came now: its first and last grid
        points (lo, hi: (3,) ints at the grid in force) and its box; None while the field is empty
        (benchmarks/crop_guess.py asks it how early the crop settles)."""
        occupied, empty = self._occupied(params, state)
        return None if empty else self._crop_box(np.asarray(params["aabb"]), state["resolution"], occupied)

    @staticmethod
    def _crop_box(aabb: np.ndarray, resolution, occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The crop's first and last grid points (lo, hi: (3,) ints) and its box (2, 3) float32."""
        idx = np.argwhere(occupied > 0)
        res = np.asarray(resolution)
        lo = np.maximum(idx.min(0) - 1, 0)
        hi = np.maximum(np.minimum(idx.max(0) + 1, res - 1), lo + 1)
        voxel = (aabb[1] - aabb[0]) / (res - 1)
        return lo, hi, np.stack([aabb[0] + lo * voxel, aabb[0] + hi * voxel]).astype(np.float32)

    def budgets(self, params: dict, batches: list[Rays], at_least: dict | None = None) -> dict[str, float] | None:
        """Work budgets for training batches like `batches`: the largest share seen plus 10%
        headroom, rounded up to 1/256, unless the config fixes them; each at least `at_least`'s
        (after an overflow, budgets only grow). None (evaluate densely) until a mask exists or
        when compaction is off; no density budget (every sample evaluated) when it is "shade"."""
        c = self.config
        if not self._measures(params):
            return None
        seen = [self._fractions(params, rays) for rays in batches]
        floor = at_least or {}

        def budget(name: str, fixed: float | None) -> float | None:
            if fixed is not None:
                return fixed
            share = max(max(float(s[name]) for s in seen) * 1.1 + 0.01, floor.get(name) or 0.0)
            b = math.ceil(share * 256) / 256
            return None if b >= 1.0 else b

        density = budget("density", c.density_budget) if c.compaction == "on" else None
        return {"density": density, "shade": budget("shade", c.shade_budget)}

    def _measures(self, params: dict) -> bool:
        """Whether budgets() measures anything for params of these shapes."""
        return params["occupancy"].size > 1 and self.config.compaction in ("on", "shade")

    def ray_filter(self, state: dict):
        """(params, rays) -> (B,) bool of the training rays worth keeping (official
        filtering_rays): those that cross the box from the start, those that cross the mask from
        the second mask update on. None when filtering is off."""
        c = self.config
        if not c.filter_rays:
            return None
        updates = len(c.mask_update_steps)
        return self._hits[bool(updates and state["mask_updates"] >= min(2, updates))]

    def _make_hits(self, use_mask: bool):
        model = self.model

        def hits(params: dict, rays: Rays) -> jax.Array:
            if not use_mask:
                params = {**params, "occupancy": jnp.ones((1, 1, 1), jnp.float32)}
            # Marched, not proposed: whether a ray crosses the box or an occupied cell is a fact of
            # the ray, and proposal samples (which follow fields still learning) can step over a
            # thin occupied region. Marching also skips the proposal fields, which on every
            # training ray of a capture cost minutes (docs/unbounded.md).
            return jnp.any(model.samples(params, rays, None, proposals=False).live, axis=-1)

        return hits

    def describe(self, params: dict, state: dict) -> str:
        """One line on the grid, box and mask in force (printed at schedule events)."""
        line = f"grid {'x'.join(map(str, state['resolution']))}, box {np.round(np.asarray(params['aabb'], np.float64), 3).tolist()}"
        if params["occupancy"].size > 1:
            # On the host: an op on the device would compile anew for each mask shape.
            line += f", mask {float(np.mean(np.asarray(params['occupancy']))):.1%} occupied"
        return line
