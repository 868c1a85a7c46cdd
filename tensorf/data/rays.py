"""Pinhole camera rays (OpenGL convention) and random ray batches across all training images."""

from __future__ import annotations

import dataclasses

import jax
import jax_dataclasses as jdc
import numpy as np

from tensorf.data.blender import Views


@jdc.pytree_dataclass
class Rays:
    """A batch of rays; every field has the ray axis first so it can be sharded across devices.

    origins: (..., 3); directions: (..., 3), unit length (depth is distance along them).
    """

    origins: jax.Array
    directions: jax.Array


def camera_rays(c2w: np.ndarray, height: int, width: int, focal: float) -> tuple[np.ndarray, np.ndarray]:
    """Rays through pixel centres of one camera. c2w: (4, 4). Returns origins, directions (H, W, 3)."""
    j, i = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    # Camera looks down -z with y up (OpenGL / Blender); pixel centres sit at +0.5.
    dirs = np.stack([(i + 0.5 - 0.5 * width) / focal, -(j + 0.5 - 0.5 * height) / focal, -np.ones_like(i)], -1)
    dirs = dirs @ c2w[:3, :3].T
    dirs = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape)
    return origins.astype(np.float32), dirs.astype(np.float32)


def view_rays(views: Views, index: int) -> Rays:
    """All rays of one view, flattened to (H*W, 3)."""
    o, d = camera_rays(views.c2w[index], views.height, views.width, views.focal)
    return Rays(origins=o.reshape(-1, 3), directions=d.reshape(-1, 3))


@dataclasses.dataclass(frozen=True)
class RayPool:
    """Every training ray with its colour, held on the host as flat (N, 3) arrays."""

    origins: np.ndarray
    directions: np.ndarray
    colors: np.ndarray

    @staticmethod
    def from_views(views: Views) -> "RayPool":
        os_, ds = zip(*(camera_rays(c, views.height, views.width, views.focal) for c in views.c2w))
        return RayPool(
            origins=np.concatenate([o.reshape(-1, 3) for o in os_]),
            directions=np.concatenate([d.reshape(-1, 3) for d in ds]),
            colors=views.images.reshape(-1, 3).astype(np.float32),
        )

    def __len__(self) -> int:
        return len(self.colors)

    def batch(self, seed: int, step: int, size: int) -> tuple[Rays, np.ndarray]:
        """Random rays for one step. A pure function of (seed, step), so a resumed run draws
        exactly the batches the uninterrupted run would have drawn."""
        idx = np.random.default_rng([seed, step]).integers(0, len(self), size)
        return Rays(origins=self.origins[idx], directions=self.directions[idx]), self.colors[idx]
