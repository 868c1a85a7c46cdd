"""Posed views of one split, and the scene they show (box, near/far, background): what every
data format produces, so each can supply its own bounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tensorf.config import Vec3
from tensorf.data.cameras import Cameras


@dataclasses.dataclass(frozen=True)
class Scene:
    """Where the scene lives: the box the fields cover (min corner, max corner), the range of ray
    distances sampled, and the background intensity composited behind it; ndc: the rays are cast
    in normalised device coordinates (forward-facing captures), so box and distances are NDC's;
    contraction: unbounded scenes (mip-NeRF 360): points beyond the unit region (|x| <= 1 in the
    L-infinity or L2 norm) are contracted into the shell out to radius 1 + shell, and the box is
    the contracted space's; ndc_scale: NDC's projection (sx, sy) of x and y (ndc_rays), with which a
    ray's world direction can be recovered from its NDC form. Hashable, so a model holding it can
    be a static jit argument."""

    aabb: tuple[Vec3, Vec3]
    near_far: tuple[float, float]
    background: float
    ndc: bool = False
    contraction: str | None = None
    ndc_scale: tuple[float, float] | None = None
    shell: float = 1.0


@dataclasses.dataclass(frozen=True)
class Views:
    """Posed images of one split. images (N, H, W, 3) float32 in [0, 1], composited on the
    scene's background; cameras one per image; names the views' file stems; background
    (N, H, W, 3) float32: each view's background fixed to the camera (turntable captures,
    tensorf.data.turntable), composited behind the field in place of the scene's flat one, or None;
    masks (N, H, W) bool: the pixels to learn from and to judge, False where the capture masks
    a pixel out (a passer-by, the photographer's shadow), or None: every pixel; files the image
    files read (tensorf.export_cameras names them), or None: images made in memory; depths
    (N, H, W) float32: measured depth (distance along the camera's viewing axis, in the scene's
    units; 0: none) to supervise training with (--data.depth), or None.

    Views of several sizes (photos in portrait and landscape) share the largest H and W: each
    image fills the top-left corner of its own size (cameras.width, cameras.height; `size`),
    and the mask leaves out the rest."""

    images: np.ndarray
    cameras: Cameras
    names: tuple[str, ...]
    background: np.ndarray | None = None
    masks: np.ndarray | None = None
    files: tuple[Path, ...] | None = None
    depths: np.ndarray | None = None

    def subset(self, indices) -> "Views":
        idx = [int(i) for i in indices]
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return Views(self.images[idx], self.cameras.subset(idx), tuple(self.names[i] for i in idx),
                     pick(self.background), pick(self.masks),
                     None if self.files is None else tuple(self.files[i] for i in idx), pick(self.depths))

    def posed(self, c2w: np.ndarray) -> "Views":
        """The same views seen from other poses c2w (N, 4, 4): refined, carried or fitted ones."""
        return dataclasses.replace(self, cameras=dataclasses.replace(self.cameras, c2w=np.asarray(c2w, np.float32)))

    @property
    def height(self) -> int:
        """The images' array height: the largest view's (see `size` for one view's)."""
        return self.images.shape[1]

    def size(self, index: int) -> tuple[int, int]:
        """(height, width) of view `index`'s own image: what its camera renders."""
        return int(self.cameras.height[index]), int(self.cameras.width[index])

    def image(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """View `index`'s image (h, w, 3) at its own size, and its mask (h, w) or None."""
        h, w = self.size(index)
        return self.images[index, :h, :w], None if self.masks is None else self.masks[index, :h, :w]

    @property
    def width(self) -> int:
        return self.images.shape[2]

