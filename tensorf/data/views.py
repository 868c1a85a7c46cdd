"""Posed views of one split, and the scene they show (box, near/far, background): what every
data format produces, so each can supply its own bounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tensorf.config import Vec3
from tensorf.data.cameras import Cameras
from tensorf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Scene:
    """Where the scene lives: the box the fields cover (min corner, max corner), the range of ray
    distances sampled, and the background intensity composited behind it. Hashable, so a model
    holding it can be a static jit argument."""

    aabb: tuple[Vec3, Vec3]
    near_far: tuple[float, float]
    background: float


@dataclasses.dataclass(frozen=True)
class Views:
    """Posed images of one split. images (N, H, W, 3) float32 in [0, 1], composited on the
    scene's background; cameras one per image; names the views' file stems."""

    images: np.ndarray
    cameras: Cameras
    names: tuple[str, ...]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def select(self, indices: tuple[int, ...]) -> "Views":
        """The views at `indices` (all of them when empty)."""
        if not indices:
            return self
        bad = [i for i in indices if not 0 <= i < len(self.names)]
        if bad:
            raise UserError(f"eval view indices {bad} out of range (the split has {len(self.names)} views)")
        idx = list(indices)
        return Views(images=self.images[idx], cameras=self.cameras.subset(idx), names=tuple(self.names[i] for i in idx))
