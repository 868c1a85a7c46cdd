"""Image-quality metrics on [0, 1] images."""

from __future__ import annotations

import dm_pix
import jax.numpy as jnp
import numpy as np


def mse_to_psnr(mse: float | jnp.ndarray):
    return -10.0 * jnp.log10(mse)


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    return float(mse_to_psnr(jnp.mean((jnp.asarray(pred) - jnp.asarray(target)) ** 2)))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM with the standard 11x11 Gaussian window (sigma 1.5), via dm-pix. Images (H, W, 3)."""
    return float(dm_pix.ssim(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32), max_val=1.0))
