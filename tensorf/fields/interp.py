"""Align-corners linear interpolation on grids: index 0 on the box's min face, R-1 on its max."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def linear_taps(g: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Lower tap index (clamped so index+1 is valid) and fractional weight of continuous index g."""
    i0 = jnp.clip(jnp.floor(g), 0, size - 2).astype(jnp.int32)
    return i0, jnp.clip(g - i0, 0.0, 1.0)


def sample_line(line: jax.Array, gv: jax.Array) -> jax.Array:
    """Linear lookup. line (Rv, C); gv (M,) continuous indices. Returns (M, C)."""
    v0, fv = linear_taps(gv, line.shape[0])
    fv = fv[:, None].astype(line.dtype)
    return line[v0] * (1 - fv) + line[v0 + 1] * fv


def trilinear(volume: jax.Array, unit_xyz: jax.Array) -> jax.Array:
    """Trilinear lookup of a scalar volume (Rx, Ry, Rz) at points in box units [0, 1]^3 (M, 3).
    Returns (M,) in the volume's dtype."""
    res = volume.shape
    taps = [linear_taps(unit_xyz[:, d] * (res[d] - 1), res[d]) for d in range(3)]
    (i, fi), (j, fj), (k, fk) = [(t[0], t[1].astype(volume.dtype)) for t in taps]
    flat = volume.reshape(-1)
    base = (i * res[1] + j) * res[2] + k
    out = jnp.zeros_like(fi)
    for di, wi in ((0, 1 - fi), (1, fi)):
        for dj, wj in ((0, 1 - fj), (1, fj)):
            for dk, wk in ((0, 1 - fk), (1, fk)):
                out = out + wi * wj * wk * flat[base + (di * res[1] + dj) * res[2] + dk]
    return out
