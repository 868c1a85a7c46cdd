"""Test-time fitting: each eval view's camera (fit_poses) or exposure (fit_exposure) fitted to its
own image with the field frozen, so that a pose-refined run (--camera-opt.mode) and an unrefined
one can be judged on what their fields show rather than on how well the views' given poses agree
with each field's frame, and runs with and without per-photo exposure (--exposure.mode) on what
their fields show rather than on how close each held-out photo's exposure happened to be to the
training photos' average.

Only the left half of each image fits the pose (`fit_poses(..., columns="left")`); the metrics
then judge the right half (tensorf.eval --fit-poses), so no pixel is both fitted and judged: the
protocol nerfstudio's authors suggest for runs with a camera optimiser
(nerfstudio-project/nerfstudio#2496). BARF and its successors fit the test poses the same way
(on the whole image). The correction is the training's own (tensorf.training.cameras: a motion
in the camera's frame) and so is the optimiser (Adam); only the field is held still. The
exposure is a gain per colour channel (--exposure.mode gain's map, tensorf.training.exposure),
linear in the rendered colour: it is solved for by least squares (NeRF in the Wild fits its
held-out views' appearance codes on the left halves the same way, by optimisation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tensorf.data.cameras import pixel_rays
from tensorf.data.rays import Rays
from tensorf.data.views import Views
from tensorf.models.base import Model
from tensorf.render import exposed
from tensorf.training.cameras import corrected


def fit_poses(model: Model, params, views: Views, steps: int, batch: int = 4096, lr: float = 1e-3,
              seed: int = 0, columns: str = "all") -> np.ndarray:
    """Camera-to-world matrices (N, 4, 4) of the views, each fitted to its image over `steps`
    Adam steps (rate lr, decayed tenfold by the end) of `batch` random pixels (the photometric MSE
    of the deterministic render), from the views' own poses. columns: "all" pixels, or only each image's "left" half (width // 2
    columns; the rest is for judging)."""
    if columns not in ("all", "left"):
        raise ValueError(f"columns must be 'all' or 'left', not {columns!r}")
    cams = views.cameras
    fit = _fitter(model, batch, lr, steps, cams.ndc, cams.model, views.background is not None)
    out = []
    for i in range(len(views.names)):
        h, w = views.size(i)
        image, kept = views.image(i)
        kept = np.ones((h, w), bool) if kept is None else kept
        if columns == "left":
            kept = kept & (np.arange(w) < w // 2)[None, :]
        background = np.zeros((h, w, 3), np.float32) if views.background is None else views.background[i, :h, :w]
        intrinsics = np.array([cams.fx[i], cams.fy[i], cams.cx[i], cams.cy[i]], np.float32)
        delta = fit(params, jnp.asarray(cams.c2w[i], jnp.float32), intrinsics, cams.distortion[i].astype(np.float32),
                    image, kept, background, jax.random.key(seed + i))
        out.append(np.asarray(corrected(jnp.asarray(cams.c2w[i:i + 1], jnp.float32), delta[None])[0]))
    return np.stack(out)


def _fitter(model: Model, batch: int, lr: float, steps: int, ndc, lens_model: str, with_background: bool):
    """The jitted fit of one view: (params, c2w, intrinsics, distortion, image, kept, background,
    key) -> the correction (6,). One compile serves every view of one size."""
    # Decayed tenfold over the fit, as the training decays the corrections' rate (camera_lr), so
    # the last steps settle instead of jittering by lr.
    tx = optax.adam(optax.exponential_decay(lr, max(steps, 1), 0.1))

    def loss(delta, params, c2w, intrinsics, distortion, image, pixels, count, background, key):
        pick = pixels[jax.random.randint(key, (batch,), 0, count)]
        y, x = jnp.divmod(pick, image.shape[1])
        c2w = corrected(c2w[None], delta[None])[0]
        o, d, r = pixel_rays(c2w, *intrinsics, x, y, ndc, distortion, lens_model)
        rays = Rays(origins=o, directions=d, radii=r, background=background[y, x] if with_background else None)
        rgb = model.render(jax.lax.stop_gradient(params), rays, None).rgb
        return jnp.mean((rgb.astype(jnp.float32) - image[y, x]) ** 2)

    grad = jax.grad(loss)

    @jax.jit
    def fit(params, c2w, intrinsics, distortion, image, kept, background, key):
        # Pixels drawn from the kept ones only: indices into the flat list of kept pixels, made
        # once for the whole fit.
        pixels = jnp.flatnonzero(kept.reshape(-1), size=kept.size, fill_value=0)
        count = jnp.maximum(jnp.sum(kept), 1)

        def body(k, carry):
            delta, opt = carry
            g = grad(delta, params, c2w, intrinsics, distortion, image, pixels, count, background,
                     jax.random.fold_in(key, k))
            updates, opt = tx.update(g, opt)
            return optax.apply_updates(delta, updates), opt

        delta = jnp.zeros((6,), jnp.float32)
        return jax.lax.fori_loop(0, steps, body, (delta, tx.init(delta)))[0]

    return fit


def fit_exposure(rgb: np.ndarray, opacity: np.ndarray, background, truth: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """The colour map (3, 4) [diag(g) | 0], a gain per channel, that takes a view's render (rgb
    (H, W, 3) over `background`, a float or (H, W, 3), with opacity (H, W)) closest to its image
    truth (H, W, 3) over the pixels `fitted` (H, W) bool, in least squares: the field's share of
    each pixel, rgb - (1 - opacity) * background, is scaled (tensorf.render.exposed). Gains only
    (exposure and white balance), not --exposure.mode affine's whole map: on half an image the
    other nine numbers also fit the field's errors there, which the other half does not share
    (on the trained_run fixture's views as rendered: 0.4 dB lost on the right halves, against
    0.1 with gains)."""
    back = (1.0 - opacity[..., None]) * np.asarray(background, np.float64)
    field = (np.asarray(rgb, np.float64) - back)[fitted]
    target = (np.asarray(truth, np.float64) - back)[fitted]
    gains = np.sum(field * target, axis=0) / np.maximum(np.sum(field * field, axis=0), 1e-12)
    return np.concatenate([np.diag(gains), np.zeros((3, 1))], axis=1).astype(np.float32)


def exposed_render(rgb: np.ndarray, opacity: np.ndarray, background, exposure: np.ndarray) -> np.ndarray:
    """The render rgb (H, W, 3) with its field's share mapped by exposure (3, 4) as training maps
    it (tensorf.render.exposed), clipped to [0, 1]."""
    back = (1.0 - opacity[..., None]) * np.asarray(background, np.float32)
    n = opacity.size
    mapped = exposed((rgb - back).reshape(n, 3), opacity.reshape(n), np.broadcast_to(exposure, (n, 3, 4)))
    return np.clip(np.asarray(mapped).reshape(rgb.shape) + back, 0.0, 1.0)
