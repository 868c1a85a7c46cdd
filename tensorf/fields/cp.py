"""CP (CANDECOMP/PARAFAC) tensor factors: one line per axis, a component is their product.

Same contract as fields/vm.py (features, resample, regularisers) so the model can switch with
`--model.field cp`. Lines are stored (R_d, C).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import jax_dataclasses as jdc
import numpy as np

from tensorf.fields.draws import normals
from tensorf.fields.interp import sample_line
from tensorf.fields.vm import interp_taps, lerp_axis
from tensorf.fields.vm import orthogonality as vm_orthogonality


@jdc.pytree_dataclass
class CPFactors:
    """lines[d]: (R_d, C) for axes x, y, z."""

    lines: tuple[jax.Array, jax.Array, jax.Array]

    @property
    def resolution(self) -> tuple[int, int, int]:
        return tuple(v.shape[0] for v in self.lines)


def init_cp(key: jax.Array, resolution: Sequence[int], components: int, scale: float) -> CPFactors:
    # The official CP init uses 0.2 for three-way products; a component is a product of three
    # lines, so the per-line scale sets the cube root of the feature scale.
    return CPFactors(lines=tuple(normals(key, [(r, components) for r in resolution], scale)))


def cp_features(factors: CPFactors, unit_xyz: jax.Array) -> tuple[jax.Array]:
    """Per-component products (M, C) at points in box units [0, 1]^3 (float32, as vm_features)."""
    res = factors.resolution
    out = None
    for d in range(3):
        v = sample_line(factors.lines[d], unit_xyz[:, d] * (res[d] - 1))
        out = v if out is None else out * v
    return (out,)


def summed_volume(factors: CPFactors) -> jax.Array:
    """Sum of the components at every grid point, (Rx, Ry, Rz) (see vm.summed_volume)."""
    x, y, z = factors.lines
    return jnp.einsum("xc,yc,zc->xyz", x, y, z)


def resample_cp(factors: CPFactors, positions: Sequence[np.ndarray]) -> CPFactors:
    fn, args = resample_program(factors, positions)
    return fn(*args)


def resample_program(factors: CPFactors, positions: Sequence[np.ndarray]) -> tuple:
    """(jitted function, arguments) that resample_cp runs (see vm.resample_program)."""
    old = factors.resolution
    return _resample, (tuple(interp_taps(old[d], positions[d]) for d in range(3)), factors)


@jax.jit
def _resample(taps, factors: CPFactors) -> CPFactors:
    return CPFactors(lines=tuple(lerp_axis(factors.lines[d], 0, taps[d]) for d in range(3)))


def l1_norm(factors: CPFactors) -> jax.Array:
    return sum(jnp.mean(jnp.abs(v)) for v in factors.lines)


def tv_planes(factors: CPFactors) -> jax.Array:
    """CP has no planes; TV applies to VM only (the official CP model has none either)."""
    return jnp.zeros(())


def orthogonality(factors: CPFactors) -> jax.Array:
    return vm_orthogonality(factors)  # the same Gram-matrix penalty on each line
