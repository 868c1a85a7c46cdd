"""One view of a run for the viewer: a parameter snapshot rendered from a camera, in chunks of a
fixed number of rays (one compile per model shape, whatever the window size or resolution), with
a chance to give up between chunks when the browser's camera has moved on."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.data.cameras import Cameras
from tensorf.data.orbit import depth_range
from tensorf.data.rays import Rays
from tensorf.models.base import Model, trained_box
from tensorf.parallel import replicate, rows_per_call
from tensorf.render import render_rays_chunked
from tensorf.visualize import depth_image, to_uint8

Mode = Literal["rgb", "depth", "opacity"]
MODES: tuple[Mode, ...] = ("rgb", "depth", "opacity")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A model and its parameters at one training step, as the viewer renders them."""

    model: Model
    params: Any
    step: int

    @staticmethod
    def take(model: Model, params: Any, step: int, mesh=None) -> "Snapshot":
        """A copy of params (the training step donates its own buffers to the next step), placed
        on the devices the viewer renders with."""
        params = jax.tree.map(jnp.copy, params)
        if mesh is not None and mesh.size > 1:
            params = replicate(mesh, params)
        return Snapshot(model, params, step)

    @property
    def box(self) -> np.ndarray:
        return trained_box(self.model, self.params)


def depth_limits(snapshot: Snapshot, camera: Cameras) -> tuple[float, float]:
    """Distances that colour depth from near to far: the trained box's nearest and farthest
    reach from the camera (NDC runs: the box's own diagonal, their rays' distance scale)."""
    box = snapshot.box
    if camera.ndc is not None:
        return 0.0, float(np.linalg.norm(box[1] - box[0]))
    return depth_range(float(np.linalg.norm(camera.c2w[0, :3, 3] - 0.5 * (box[0] + box[1]))), box)


def render_view(snapshot: Snapshot, camera: Cameras, mode: Mode = "rgb", chunk: int = 4096, mesh=None,
                cancelled: Callable[[], bool] | None = None) -> np.ndarray | None:
    """(H, W, 3) uint8 image of camera 0 of `camera` in the given mode, or None when `cancelled`
    turned true between chunks. Every chunk holds exactly `chunk` rays (the last repeats the final
    pixel), so new image sizes cost no compile."""
    if mode not in MODES:
        raise ValueError(f"render mode {mode!r} is not one of {MODES}")
    h, w = int(camera.height[0]), int(camera.width[0])
    n = h * w
    chunk = -(-chunk // rows_per_call(mesh)) * rows_per_call(mesh)
    parts = []
    for start in range(0, n, chunk):
        if cancelled is not None and cancelled():
            return None
        index = np.minimum(np.arange(start, start + chunk, dtype=np.int32), n - 1)
        y, x = np.divmod(index, np.int32(w))
        o, d, r = camera.pixels_rays(0, x, y)
        out = render_rays_chunked(snapshot.model, snapshot.params, Rays(origins=o, directions=d, radii=r), chunk, mesh)
        keep = min(chunk, n - start)
        parts.append((out.rgb[:keep], out.median_depth[:keep], out.opacity[:keep]))
    rgb, depth, opacity = (np.concatenate(p) for p in zip(*parts))
    if mode == "rgb":
        img = rgb.reshape(h, w, 3)
    elif mode == "opacity":
        img = opacity.reshape(h, w)
    else:
        img = depth_image(depth.reshape(h, w), opacity.reshape(h, w), *depth_limits(snapshot, camera))
    return to_uint8(img)
