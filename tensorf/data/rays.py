"""Ray batches: one view's rays, and random batches across all training images."""

from __future__ import annotations

import dataclasses

import jax
import jax_dataclasses as jdc
import numpy as np

from tensorf.data.views import Views


@jdc.pytree_dataclass
class Rays:
    """A batch of rays; every field has the ray axis first so it can be sharded across devices.

    origins: (..., 3); directions: (..., 3), unit length (depth is distance along them).
    """

    origins: jax.Array
    directions: jax.Array


def view_rays(views: Views, index: int) -> Rays:
    """All rays of one view, flattened to (H*W, 3)."""
    o, d = views.cameras.rays(index)
    return Rays(origins=o.reshape(-1, 3), directions=d.reshape(-1, 3))


@dataclasses.dataclass(frozen=True)
class RayPool:
    """Every training ray with its colour, held on the host as flat (N, 3) arrays."""

    origins: np.ndarray
    directions: np.ndarray
    colors: np.ndarray

    @staticmethod
    def from_views(views: Views) -> "RayPool":
        os_, ds = zip(*(views.cameras.rays(i) for i in range(len(views.cameras))))
        return RayPool(
            origins=np.concatenate([o.reshape(-1, 3) for o in os_]),
            directions=np.concatenate([d.reshape(-1, 3) for d in ds]),
            colors=views.images.reshape(-1, 3).astype(np.float32),
        )

    def __len__(self) -> int:
        return len(self.colors)

    def subset(self, keep: np.ndarray) -> "RayPool":
        """The rays where keep (N,) bool is set, in their order."""
        return RayPool(origins=self.origins[keep], directions=self.directions[keep], colors=self.colors[keep])

    def batch(self, seed: int, step: int, size: int, process: int = 0) -> tuple[Rays, np.ndarray]:
        """Random rays for one step. A pure function of (seed, step) and, on several hosts, of the
        process drawing them, so a resumed run draws exactly the batches the uninterrupted run
        would have drawn."""
        idx = np.random.default_rng([seed, step] + ([process] if process else [])).integers(0, len(self), size)
        return Rays(origins=self.origins[idx], directions=self.directions[idx]), self.colors[idx]
