"""Turning renders into pictures: colour maps for depth and opacity."""

from __future__ import annotations

import numpy as np

# Five stops of matplotlib's viridis, linearly interpolated (enough for depth previews).
_VIRIDIS = np.array(
    [[0.267, 0.005, 0.329], [0.229, 0.322, 0.546], [0.128, 0.567, 0.551], [0.369, 0.789, 0.383], [0.993, 0.906, 0.144]]
)


def colormap(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> RGB in [0, 1] (shape + (3,))."""
    x = np.clip(np.nan_to_num(x), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    i = np.minimum(np.floor(x).astype(int), len(_VIRIDIS) - 2)
    f = (x - i)[..., None]
    return _VIRIDIS[i] * (1 - f) + _VIRIDIS[i + 1] * f


def depth_image(distance: np.ndarray, opacity: np.ndarray, near: float, far: float) -> np.ndarray:
    """Each ray's median distance (RenderOutput.median_depth) coloured from near (dark) to far
    (bright), faded to white as its opacity falls. The median, as nerfacto's depth output: the
    expected distance averages what a ray passes, so an edge pixel or a faint floater in front of
    a surface reads as a depth between the two, where nothing is."""
    rgb = colormap((distance - near) / max(far - near, 1e-6))
    return rgb * opacity[..., None] + (1 - opacity[..., None])


def to_uint8(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
