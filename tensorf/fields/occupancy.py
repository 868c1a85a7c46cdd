"""Occupancy (alpha) mask: a coarse static-shape grid saying where the field has density.

Built on the host from the field at a few schedule steps (official updateAlphaMask), queried per
sample inside jit with one nearest-vertex lookup. The grid holds 0/1 float32 so that it can sit in
the params pytree as a frozen leaf (checkpointed with everything else, never updated by Adam).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.chunked import map_chunks


def grid_points(aabb: np.ndarray, resolution) -> np.ndarray:
    """World positions (Rx, Ry, Rz, 3) of the grid vertices (align-corners: faces included)."""
    axes = [np.linspace(aabb[0][d], aabb[1][d], resolution[d], dtype=np.float32) for d in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1)


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Max-pool with a (2r+1)^3 window (official: max_pool3d, kernel 3)."""
    out = mask.copy()
    padded = np.pad(mask, radius)
    r = 2 * radius + 1
    sx, sy, sz = mask.shape
    for i in range(r):
        for j in range(r):
            for k in range(r):
                out |= padded[i : i + sx, j : j + sy, k : k + sz]
    return out


ALPHA_CHUNK = 262144
"""Grid points per density call in alpha_grid (one compiled shape for every grid)."""


def alpha_grid(
    density: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    aabb: np.ndarray,
    resolution,
    step: float,
    chunk: int = ALPHA_CHUNK,
) -> np.ndarray:
    """Opacity of one `step`-long segment at every grid vertex. density: (params, (M, 3)) -> (M,),
    jitted by the caller and kept, so that its compiled program is found again (and can be
    compiled ahead: it is called on (params, (min(chunk, points), 3) float32)).

    params go into the jitted function as an argument, never as a closure: closed-over arrays
    become compile-time constants (slow to compile, and folded into the program)."""
    pts = grid_points(aabb, resolution).reshape(-1, 3)
    sigma = map_chunks(lambda x: density(params, x), pts, chunk=chunk).reshape(*resolution)
    return 1.0 - np.exp(-sigma * step)


def occupancy_from_alpha(alpha: np.ndarray, threshold: float, radius: int = 1) -> np.ndarray:
    """0/1 float32 mask: vertices whose dilated opacity reaches the threshold."""
    return dilate(alpha >= threshold, radius).astype(np.float32)


def lookup(mask: jax.Array, unit_xyz: jax.Array) -> jax.Array:
    """Occupancy (M,) bool at points in box units [0, 1]^3 (nearest vertex; outside = empty)."""
    res = jnp.asarray(mask.shape)
    inside = jnp.all((unit_xyz >= 0) & (unit_xyz <= 1), axis=-1)
    idx = jnp.clip(jnp.round(unit_xyz * (res - 1)).astype(jnp.int32), 0, res - 1)
    flat = (idx[:, 0] * mask.shape[1] + idx[:, 1]) * mask.shape[2] + idx[:, 2]
    return inside & (mask.reshape(-1)[flat] > 0)
