"""Reading one image as float RGB: the part every data format shares."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from tensorf.errors import UserError


def _area_downscale(img: np.ndarray, f: int, path: Path) -> np.ndarray:
    h, w = img.shape[:2]
    if h % f or w % f:
        raise UserError(f"{path}: size {w}x{h} is not divisible by downscale {f}; pick a factor that divides it")
    return img.reshape(h // f, f, w // f, f, img.shape[2]).mean(axis=(1, 3))


def read_rgb(path: Path, downscale: int, background: float = 1.0) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] (8- or 16-bit; grey repeated; alpha composited over
    `background`), area-averaged by `downscale`."""
    if not path.is_file():
        raise UserError(f"{path}: image file is missing; restore it or remove its frame from the transforms json")
    try:
        raw = iio.imread(path)
    except Exception as e:  # imageio raises many types for broken files
        raise UserError(f"{path}: cannot read image ({e.__class__.__name__}); replace the file") from None
    img = raw.astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)
    if img.ndim == 2:
        img = img[..., None].repeat(3, axis=-1)
    if img.shape[-1] == 4:
        # Composite at full resolution, then average: what a camera sees of the backdrop.
        img = img[..., :3] * img[..., 3:] + background * (1.0 - img[..., 3:])
    img = img[..., :3]
    if downscale > 1:
        img = _area_downscale(img, downscale, path)
    return img
