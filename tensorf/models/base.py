"""The one interface through which training, eval, checkpoints and renderers reach a model.

A model is a frozen, hashable object built from its config (so it can be a static jit argument);
its parameters live in a separate pytree. Shapes that change during training (grid resolution,
mask size) are described by a small JSON "state" that the trainer keeps beside the params and
stores in every checkpoint; restoring asks the model for params of that state's shapes.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax

from tensorf.data.rays import Rays
from tensorf.render import RenderOutput

Params = Any


class Model(Protocol):
    # --- shapes and schedule (host side) ---
    def initial_state(self) -> dict:
        """JSON-able description of the shapes in force at step 0 (e.g. grid resolution)."""

    def init(self, key: jax.Array, state: dict | None = None) -> Params:
        """Fresh parameters with the shapes `state` describes (step 0 when None)."""

    def for_state(self, state: dict) -> "Model":
        """The model configured for a state (static render settings that depend on it)."""

    def advance(self, params: Params, state: dict, step: int) -> tuple[Params, dict, set[str]]:
        """Apply schedule events due by `step` (upsampling, mask updates, ...). Returns the new
        params and state and the events: "resize" restarts the optimizer, "mask" re-filters rays."""

    def ray_filter(self, state: dict) -> Callable[[Params, Rays], jax.Array] | None:
        """Jittable (params, rays) -> (B,) bool of training rays worth keeping, or None to keep all."""

    def budgets(self, params: Params, batches: list[Rays]) -> dict | None:
        """Fixed work budgets (JSON-able; kept in the state) sized on sample training batches,
        or None when the model does all its work densely."""

    def describe(self, params: Params, state: dict) -> str:
        """One line on the shapes in force, printed at schedule events."""

    # --- inside jit ---
    def render(self, params: Params, rays: Rays, key: jax.Array | None) -> RenderOutput:
        """Render a batch of rays (B leading). key=None renders deterministically (eval)."""

    def density(self, params: Params, xyz: jax.Array) -> jax.Array:
        """Volume density (M,) at world points (M, 3) (mesh export, occupancy)."""

    def color(self, params: Params, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        """RGB (M, 3) at world points (M, 3) seen along unit directions (M, 3)."""

    def loss_weights(self, step: float) -> dict[str, float]:
        """Regulariser weights at a schedule step (passed into the jitted step as values)."""

    def regularizer(self, params: Params, weights: dict) -> jax.Array:
        """Scalar added to the photometric loss."""

    def param_groups(self, params: Params) -> Any:
        """Pytree like params naming each leaf's group: "grid", "mlp" or "frozen"."""


def build_model(config) -> Model:
    """Model for a model config; each model family registers here."""
    from tensorf.config import TensoRFConfig
    from tensorf.models.tensorf import TensoRF

    if isinstance(config, TensoRFConfig):
        return TensoRF(config)
    raise TypeError(f"no model for config type {type(config).__name__}")
