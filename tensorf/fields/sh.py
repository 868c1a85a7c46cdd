"""Spherical-harmonics shading: appearance features are 3 x 9 SH coefficients (degree 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Real SH basis constants (degree <= 2), as in the official TensoRF / Plenoxels eval_sh_bases.
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
N_COEFFS = 9


def sh_basis(d: jax.Array) -> jax.Array:
    """Degree-2 real SH basis at unit directions d (M, 3) -> (M, 9)."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    return jnp.stack(
        [
            jnp.full_like(x, C0),
            -C1 * y,
            C1 * z,
            -C1 * x,
            C2[0] * x * y,
            C2[1] * y * z,
            C2[2] * (2.0 * z * z - x * x - y * y),
            C2[3] * x * z,
            C2[4] * (x * x - y * y),
        ],
        axis=-1,
    )


def sh_color(features: jax.Array, viewdirs: jax.Array) -> jax.Array:
    """features (M, 27) as (3 colours x 9 coefficients) -> RGB (M, 3), relu(. + 0.5) as official."""
    coeffs = features.astype(jnp.float32).reshape(-1, 3, N_COEFFS)
    return jax.nn.relu(jnp.einsum("mck,mk->mc", coeffs, sh_basis(viewdirs.astype(jnp.float32))) + 0.5)
