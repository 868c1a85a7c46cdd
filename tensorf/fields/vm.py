"""VM (vector-matrix) tensor factors: three plane/line pairs per quantity.

Pair i couples the plane over axes PLANE_AXES[i] with the line along LINE_AXIS[i] (the official
matMode/vecMode). Planes are stored (R_a, R_b, C) and lines (R_v, C) so that one bilinear tap
gathers a contiguous row of C components. Interpolation uses align-corners semantics: grid index
0 sits on the box's min face and index R-1 on its max face.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import jax_dataclasses as jdc
import numpy as np

from tensorf.fields.draws import normals
from tensorf.fields.interp import linear_taps, sample_line

PLANE_AXES = ((0, 1), (0, 2), (1, 2))
LINE_AXIS = (2, 1, 0)


@jdc.pytree_dataclass
class VMFactors:
    """planes[i]: (R[a], R[b], C_i) for (a, b) = PLANE_AXES[i]; lines[i]: (R[LINE_AXIS[i]], C_i)."""

    planes: tuple[jax.Array, jax.Array, jax.Array]
    lines: tuple[jax.Array, jax.Array, jax.Array]

    @property
    def resolution(self) -> tuple[int, int, int]:
        r = [0, 0, 0]
        for (a, b), p in zip(PLANE_AXES, self.planes):
            r[a], r[b] = p.shape[0], p.shape[1]
        return tuple(r)


def voxels_to_resolution(n_voxels: int, aabb: np.ndarray) -> tuple[int, int, int]:
    """Per-axis resolution with about n_voxels cubic voxels filling the box (official N_to_reso)."""
    size = np.asarray(aabb[1], np.float64) - np.asarray(aabb[0], np.float64)
    voxel = (size.prod() / n_voxels) ** (1.0 / 3.0)
    return tuple(int(v) for v in np.floor(size / voxel + 1e-6))


def init_vm(key: jax.Array, resolution: Sequence[int], components: Sequence[int], scale: float) -> VMFactors:
    shapes = [(resolution[a], resolution[b], c) for (a, b), c in zip(PLANE_AXES, components)]
    shapes += [(resolution[v], c) for v, c in zip(LINE_AXIS, components)]
    arrays = normals(key, shapes, scale)
    return VMFactors(planes=tuple(arrays[:3]), lines=tuple(arrays[3:]))


def _sample_plane(plane: jax.Array, ga: jax.Array, gb: jax.Array) -> jax.Array:
    """Bilinear lookup. plane (Ra, Rb, C); ga, gb (M,) continuous indices. Returns (M, C)."""
    ra, rb, c = plane.shape
    a0, fa = linear_taps(ga, ra)
    b0, fb = linear_taps(gb, rb)
    flat = plane.reshape(ra * rb, c)
    idx = a0 * rb + b0
    fa, fb = fa[:, None].astype(plane.dtype), fb[:, None].astype(plane.dtype)
    top = flat[idx] * (1 - fb) + flat[idx + 1] * fb
    bot = flat[idx + rb] * (1 - fb) + flat[idx + rb + 1] * fb
    return top * (1 - fa) + bot * fa


def vm_features(factors: VMFactors, unit_xyz: jax.Array) -> tuple[jax.Array, ...]:
    """Plane*line products of each pair at points given in box units [0, 1]^3.

    unit_xyz: (M, 3). Returns three arrays (M, C_i) in the factors' dtype (float32: a half
    precision gather would make its gradient a half precision scatter-add into the grid, which
    GPUs run as compare-and-swap loops; docs/gpu.md).
    """
    res = factors.resolution
    g = [unit_xyz[:, d] * (res[d] - 1) for d in range(3)]
    out = []
    for (a, b), v, plane, line in zip(PLANE_AXES, LINE_AXIS, factors.planes, factors.lines):
        out.append(_sample_plane(plane, g[a], g[b]) * sample_line(line, g[v]))
    return tuple(out)


def summed_volume(factors: VMFactors) -> jax.Array:
    """The field summed over components at every grid point, (Rx, Ry, Rz): one matmul per pair.

    Bilinear-in-plane times linear-in-line weights factor into trilinear weights, so trilinear
    lookups in this volume equal summed vm_features exactly; for many lookups they are far
    cheaper (8 scalar taps instead of 18 rows of C components, on the CPU backend).
    """
    p, v = factors.planes, factors.lines
    return (
        jnp.einsum("xyc,zc->xyz", p[0], v[0])
        + jnp.einsum("xzc,yc->xyz", p[1], v[1])
        + jnp.einsum("yzc,xc->xyz", p[2], v[2])
    )


def interp_taps(old: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation at continuous indices `positions` along an axis of `old` points:
    (i0, i1, f) with value = x[i0] * (1 - f) + x[i1] * f (positions clamped to the axis)."""
    pos = np.clip(np.asarray(positions, np.float64), 0, old - 1)
    i0 = np.clip(np.floor(pos), 0, max(old - 2, 0)).astype(np.int32)
    return i0, np.minimum(i0 + 1, old - 1).astype(np.int32), (pos - i0).astype(np.float32)


def lerp_axis(x: jax.Array, axis: int, taps) -> jax.Array:
    """x resampled along `axis` at interp_taps' positions (gathers: on a GPU an interpolation
    matrix product spent 5-10 s in compilation per resize, benchmarks/results.md)."""
    i0, i1, f = taps
    f = f.reshape([-1 if d == axis else 1 for d in range(x.ndim)])
    return jnp.take(x, i0, axis) * (1 - f) + jnp.take(x, i1, axis) * f


def align_corners_positions(old: Sequence[int], new: Sequence[int]) -> list[np.ndarray]:
    """Continuous old indices of a new grid's points along each axis (align-corners resize)."""
    return [np.linspace(0.0, old[d] - 1, new[d]) for d in range(3)]


def resample_vm(factors: VMFactors, positions: Sequence[np.ndarray]) -> VMFactors:
    """New factors whose grid points sit at continuous old indices positions[d] along axis d."""
    fn, args = resample_program(factors, positions)
    return fn(*args)


def resample_program(factors: VMFactors, positions: Sequence[np.ndarray]) -> tuple:
    """(jitted function, arguments) that resample_vm runs; factors may be shapes
    (jax.ShapeDtypeStruct leaves), so that the training loop can compile it ahead of an event."""
    old = factors.resolution
    return _resample, (tuple(interp_taps(old[d], positions[d]) for d in range(3)), factors)


@jax.jit
def _resample(taps, factors: VMFactors) -> VMFactors:
    # One program for every factor: on a GPU each eager op on new shapes is a compile of its own.
    return VMFactors(
        planes=tuple(lerp_axis(lerp_axis(p, 0, taps[a]), 1, taps[b]) for (a, b), p in zip(PLANE_AXES, factors.planes)),
        lines=tuple(lerp_axis(line, 0, taps[v]) for v, line in zip(LINE_AXIS, factors.lines)),
    )


def resize_vm(factors: VMFactors, resolution: Sequence[int]) -> VMFactors:
    """Resample every factor to a new per-axis resolution (align-corners linear interpolation).

    Planes and lines are piecewise-(bi)linear, so when the new grid contains the old grid points
    (e.g. R -> 2R - 1) the field is reproduced exactly.
    """
    return resample_vm(factors, align_corners_positions(factors.resolution, resolution))


def l1_norm(factors: VMFactors) -> jax.Array:
    """Mean absolute value of every plane and line, summed (official density_L1)."""
    return sum(jnp.mean(jnp.abs(p)) for p in factors.planes) + sum(jnp.mean(jnp.abs(v)) for v in factors.lines)


def tv_planes(factors: VMFactors) -> jax.Array:
    """Total variation of the planes (official TVLoss on each plane, times its 1e-2 factor):
    2 * (mean squared difference along each plane axis, summed over axes), summed over planes."""
    total = 0.0
    for p in factors.planes:
        da = jnp.mean((p[1:] - p[:-1]) ** 2)
        db = jnp.mean((p[:, 1:] - p[:, :-1]) ** 2)
        total = total + 2.0 * (da + db) * 1e-2
    return total


def orthogonality(factors: VMFactors) -> jax.Array:
    """Mean |off-diagonal| of each line's component Gram matrix, summed (official vector_comp_diffs)."""
    total = 0.0
    for v in factors.lines:
        gram = v.T @ v
        c = gram.shape[0]
        off = jnp.abs(gram) * (1.0 - jnp.eye(c))
        total = total + jnp.sum(off) / (c * (c - 1))
    return total
