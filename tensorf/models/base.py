"""The one interface through which training, eval, checkpoints and renderers reach a model.

A model is a frozen, hashable object built from its config (so it can be a static jit argument);
its trainable state lives in a separate params pytree. A model with a growing grid reports its
"resolution" (a tuple of ints, or () for models without one); the trainer stores it in each
checkpoint and asks the model for params of that resolution when restoring.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

from tensorf.data.rays import Rays
from tensorf.render import RenderOutput

Params = Any
Resolution = tuple[int, ...]


class Model(Protocol):
    def resolution_at(self, step: int) -> Resolution:
        """Grid resolution in force at a training step (from the model's upsampling schedule)."""

    def init(self, key: jax.Array, resolution: Resolution) -> Params:
        """Fresh parameters at the given resolution."""

    def resize(self, params: Params, resolution: Resolution) -> Params:
        """Parameters resampled to a new resolution (the rest unchanged)."""

    def render(self, params: Params, rays: Rays, key: jax.Array | None) -> RenderOutput:
        """Render a batch of rays (B leading). key=None renders deterministically (eval)."""

    def density(self, params: Params, xyz: jax.Array) -> jax.Array:
        """Volume density (M,) at world points (M, 3) (mesh export, occupancy)."""

    def color(self, params: Params, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        """RGB (M, 3) at world points (M, 3) seen along unit directions (M, 3)."""

    def regularizer(self, params: Params) -> jax.Array:
        """Scalar added to the photometric loss."""

    def param_groups(self, params: Params) -> Any:
        """Pytree like params with a group name ("grid" or "mlp") at every leaf."""


def build_model(config) -> Model:
    """Model for a model config; each model family registers here."""
    from tensorf.config import TensoRFConfig
    from tensorf.models.tensorf import TensoRF

    if isinstance(config, TensoRFConfig):
        return TensoRF(config)
    raise TypeError(f"no model for config type {type(config).__name__}")
