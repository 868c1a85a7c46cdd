"""NeRF's MLP (Mildenhall et al. 2020; layout as in JaxNeRF's nerf/model_utils.py MLP)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from tensorf.fields.mlp import positional_encoding


def encode(x: jax.Array, n_freqs: int) -> jax.Array:
    """The input followed by its sin/cos encoding at 2^0 .. 2^(n-1): (..., D) -> (..., D (1 + 2n))."""
    return jnp.concatenate([x, positional_encoding(x, n_freqs)], axis=-1)


class NeRFMLP(nn.Module):
    """Encoded points (M, P) and encoded view directions (M, V) -> raw density (M,), RGB (M, 3).

    A ReLU trunk of `depth` layers with the encoded input concatenated again after layer
    `skip` (0-based, as JaxNeRF: after the fifth layer for skip 4); density is a linear read-out of
    the trunk; colour comes from a linear bottleneck of the trunk and the view encoding through
    `depth_cond` ReLU layers and a sigmoid. Glorot-uniform kernels (JaxNeRF)."""

    depth: int = 8
    width: int = 256
    skip: int = 4
    depth_cond: int = 1
    width_cond: int = 128
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, points: jax.Array, dirs: jax.Array) -> tuple[jax.Array, jax.Array]:
        dense = lambda width: nn.Dense(width, dtype=self.dtype, kernel_init=nn.initializers.glorot_uniform())  # noqa: E731
        inputs = points.astype(self.dtype)
        x = inputs
        for i in range(self.depth):
            x = nn.relu(dense(self.width)(x))
            if i % self.skip == 0 and i > 0:
                x = jnp.concatenate([x, inputs], axis=-1)
        sigma = dense(1)(x)[..., 0]
        x = jnp.concatenate([dense(self.width)(x), dirs.astype(self.dtype)], axis=-1)
        for _ in range(self.depth_cond):
            x = nn.relu(dense(self.width_cond)(x))
        rgb = nn.sigmoid(dense(3)(x))
        return sigma.astype(jnp.float32), rgb.astype(jnp.float32)
