"""The interfaces through which training, eval, checkpoints and renderers reach a model.

A model is a frozen, hashable object built from its config and the scene (so it can be a static
jit argument); its parameters live in a separate pytree. Shapes that change during training (grid
resolution, mask size) are described by a small JSON "state" that the trainer keeps beside the
params and stores in every checkpoint; restoring asks the model for params of that state's shapes.

The model is what runs inside jit; its schedule is what the training loop runs between steps
(events that change shapes, work budgets, ray filtering). Tools that only render need the model.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import numpy as np

from tensorf.config import MipNeRF360Config, MipNeRFConfig, NeRFConfig, TensoRFConfig, resolve
from tensorf.data.rays import Rays
from tensorf.data.views import Scene
from tensorf.errors import UserError
from tensorf.models.ahead import Ahead
from tensorf.models.nerf import MipNeRF, MipNeRF360, NeRF
from tensorf.models.tensorf import TensoRF, TensoRFSchedule
from tensorf.render import RenderOutput

Params = Any


class Model(Protocol):
    def initial_state(self) -> dict:
        """JSON-able description of the shapes in force at step 0 (e.g. grid resolution)."""

    def init(self, key: jax.Array, state: dict | None = None) -> Params:
        """Fresh parameters with the shapes `state` describes (step 0 when None)."""

    def for_state(self, state: dict) -> "Model":
        """The model configured for a state (static render settings that depend on it)."""

    def render(self, params: Params, rays: Rays, keys: jax.Array | None) -> RenderOutput:
        """Render a batch of rays (B leading). keys (B,): one PRNG key per ray, so that a ray's
        randomness does not depend on the batch or device shard it is in; None renders
        deterministically (eval)."""

    def density(self, params: Params, xyz: jax.Array) -> jax.Array:
        """Volume density (M,) at world points (M, 3) as rendering sees it (mesh export, masks)."""

    def color(self, params: Params, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        """RGB (M, 3) at world points (M, 3) seen along unit directions (M, 3)."""

    def training_loss(self, params: Params, rays: Rays, colors: jax.Array, keys: jax.Array, weights: dict):
        """(loss, aux) of a training batch: the loss is what the step differentiates; aux holds
        "mse" (photometric), "dropped" (live samples the work budgets left out) and any other
        scalar to log (e.g. "interlevel"), averaged over devices."""

    def loss_weights(self, step: jax.Array, decay: jax.Array) -> dict[str, jax.Array]:
        """Regulariser weights at a schedule step (a float32 scalar; computed inside the jitted
        step); decay: the learning rates' decay factor there, without restarts (lrs_at)."""

    def regularizer(self, params: Params, weights: dict) -> jax.Array:
        """Scalar added to the photometric loss."""

    def param_groups(self, params: Params) -> Any:
        """Pytree like params naming each leaf's group: "grid", "mlp" or "frozen"."""


class Schedule(Protocol):
    """Host-side events between training steps. A model without any has no events."""

    def pending(self, state: dict, step: int) -> bool:
        """Whether any event is due by `step` (host arithmetic only: asked every step)."""

    def advance(self, params: Params, state: dict, step: int) -> tuple[Params, dict, set[str]]:
        """Apply the events due by `step`. Returns the new params and state (always adopted) and
        the events: "resize" restarts the optimizer, "mask" re-filters the ray pool."""

    def ahead(self, params: Params, state: dict, rays: Rays) -> Ahead | None:
        """The next event, so that the event's own programs and the step after it can be compiled
        ahead (the step only when the shapes it leaves are known); None when no event is left.
        rays: the shapes of a batch as the budgets are measured on (one device's shard)."""

    def ray_filter(self, state: dict) -> Callable[[Params, Rays], jax.Array] | None:
        """Jittable (params, rays) -> (B,) bool of training rays worth keeping, or None to keep all.
        The same function object for the same kind of state (it is a static jit argument)."""

    def budgets(self, params: Params, batches: list[Rays], at_least: dict | None = None) -> dict | None:
        """Fixed work budgets (JSON-able; kept in the state) sized on sample training batches, no
        smaller than `at_least`, or None when the model does all its work densely."""

    def describe(self, params: Params, state: dict) -> str:
        """One line on the shapes in force, printed at schedule events."""


def trained_box(model: Model, params: Params) -> np.ndarray:
    """(2, 3) box the trained field lives in: the model's own (TensoRF shrinks it at its first
    mask update) or the scene's."""
    return np.asarray(params["aabb"] if "aabb" in params else model.scene.aabb, np.float32)


class NoEvents:
    """The schedule of a model whose shapes never change (NeRF): no events, no ray filter, no
    work budgets."""

    def pending(self, state: dict, step: int) -> bool:
        return False

    def advance(self, params: Params, state: dict, step: int) -> tuple[Params, dict, set[str]]:
        return params, state, set()

    def ahead(self, params: Params, state: dict, rays: Rays) -> None:
        return None

    def ray_filter(self, state: dict) -> None:
        return None

    def budgets(self, params: Params, batches: list[Rays], at_least: dict | None = None) -> None:
        return None

    def describe(self, params: Params, state: dict) -> str:
        return "no schedule events"


def build_model(config, scene: Scene, backend: str | None = None) -> Model:
    """Model for a model config and scene, its `auto` choices resolved for `backend` (default:
    JAX's). Each model family registers here."""
    config = resolve(config, scene, backend or jax.default_backend())
    if isinstance(config, TensoRFConfig):
        return TensoRF(config, scene)
    if isinstance(config, (NeRFConfig, MipNeRFConfig)):
        if scene.contraction:
            raise UserError("--data.contraction (unbounded scenes) works with the TensoRF model and "
                            "model:mipnerf360 only")
        return NeRF(config, scene) if isinstance(config, NeRFConfig) else MipNeRF(config, scene)
    if isinstance(config, MipNeRF360Config):
        if not scene.contraction:
            raise UserError("mip-NeRF 360 is for unbounded scenes: give --data.contraction linf (or l2)")
        return MipNeRF360(config, scene)
    raise TypeError(f"no model for config type {type(config).__name__}")


def build_schedule(model: Model) -> Schedule:
    if isinstance(model, TensoRF):
        return TensoRFSchedule(model)
    return NoEvents()
