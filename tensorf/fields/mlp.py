"""Colour MLP on appearance features and view direction (official MLPRender_Fea)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def positional_encoding(x: jax.Array, n_freqs: int) -> jax.Array:
    """sin/cos at frequencies 2^0..2^(n-1). x (..., D) -> (..., 2 * D * n_freqs)."""
    if n_freqs == 0:
        return x[..., :0]
    freqs = 2.0 ** jnp.arange(n_freqs, dtype=x.dtype)
    scaled = (x[..., None] * freqs).reshape(*x.shape[:-1], -1)
    return jnp.concatenate([jnp.sin(scaled), jnp.cos(scaled)], axis=-1)


class ColorMLP(nn.Module):
    """features (M, F), view directions (M, 3) -> RGB (M, 3) in [0, 1]."""

    hidden: int = 128
    feature_pe: int = 2
    view_pe: int = 2
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, viewdirs: jax.Array) -> jax.Array:
        x = jnp.concatenate(
            [
                features,
                viewdirs,
                positional_encoding(features, self.feature_pe),
                positional_encoding(viewdirs, self.view_pe),
            ],
            axis=-1,
        ).astype(self.dtype)
        x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x))
        x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x))
        x = nn.Dense(3, dtype=self.dtype)(x)
        return jax.nn.sigmoid(x.astype(jnp.float32))
