"""Camera pose refinement: a per-view correction of the training cameras, learned with the field
(nerfstudio's camera optimiser in its SO3xR3 mode). Photos posed by COLMAP or a phone carry pose
errors of a fraction of a degree that a field can only explain with blur; the correction lets the
rays move instead.

Each training view v has a tangent vector delta[v] = (t, w) (6,): t a translation along the
camera's own axes (world units), w an axis-angle rotation about the camera's centre. The view's
camera-to-world becomes c2w[v] @ [[exp(w), t], [0, 1]] (nerfstudio's apply_to_camera). At
delta = 0 every ray is the uncorrected one, bit for bit.

Defaults follow nerfacto (nerfstudio/configs/method_configs.py: camera_opt Adam lr 1e-3,
eps 1e-15, decaying exponentially to 1e-4 over 5000 steps; nerfstudio/cameras/camera_optimizers.py:
penalties 1e-2 on the translations' and 1e-3 on the rotations' mean L2 norm)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tensorf.config import CameraOptConfig
from tensorf.data.cameras import Cameras
from tensorf.data.views import Views

# Below this squared angle exp(w) uses its Taylor series: the closed form divides by the angle,
# and the refinement starts from w = 0 exactly.
_SMALL_ANGLE_SQ = 1e-8


def camera_tx() -> optax.GradientTransformation:
    """The corrections' own Adam (their learning rate is applied in the step: camera_lr)."""
    return optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-15)


def initial_cameras(views: int) -> dict:
    """Zero corrections for `views` training views and their optimizer state: the state the step
    carries and checkpoints store (a plain dict of arrays)."""
    delta = jnp.zeros((views, 6), jnp.float32)
    return {"delta": delta, "opt": camera_tx().init(delta)}


def camera_lr(cfg: CameraOptConfig, sched) -> jax.Array:
    """The corrections' learning rate at schedule position `sched` (nerfstudio's
    ExponentialDecayScheduler, its cosine ramp from 0): over cfg.warmup_steps from 0 to cfg.lr
    along a quarter sine, then log-linear to cfg.lr_final at cfg.decay_steps, then held."""
    s = jnp.asarray(sched, jnp.float32)
    warm = cfg.warmup_steps
    t = jnp.clip((s - warm) / max(cfg.decay_steps - warm, 1), 0.0, 1.0)
    decayed = jnp.exp((1.0 - t) * jnp.log(jnp.float32(cfg.lr)) + t * jnp.log(jnp.float32(cfg.lr_final)))
    if not warm:
        return decayed
    return jnp.where(s < warm, cfg.lr * jnp.sin(0.5 * jnp.pi * jnp.clip(s / warm, 0.0, 1.0)), decayed)


def rotation(w: jax.Array) -> jax.Array:
    """exp of axis-angle vectors w (..., 3): rotation matrices (..., 3, 3) (Rodrigues), with
    finite gradients at w = 0."""
    theta_sq = jnp.sum(w * w, axis=-1)[..., None, None]
    small = theta_sq < _SMALL_ANGLE_SQ
    # The double where: the closed form's branch sees a safe angle, so its gradient is finite too.
    theta = jnp.sqrt(jnp.where(small, 1.0, theta_sq))
    a = jnp.where(small, 1.0 - theta_sq / 6.0, jnp.sin(theta) / theta)
    b = jnp.where(small, 0.5 - theta_sq / 24.0, (1.0 - jnp.cos(theta)) / jnp.where(small, 1.0, theta_sq))
    x, y, z = w[..., 0], w[..., 1], w[..., 2]
    zero = jnp.zeros_like(x)
    k = jnp.stack([jnp.stack([zero, -z, y], -1), jnp.stack([z, zero, -x], -1), jnp.stack([-y, x, zero], -1)], -2)
    return jnp.eye(3, dtype=w.dtype) + a * k + b * (k @ k)


def corrected(c2w: jax.Array, delta: jax.Array) -> jax.Array:
    """Camera-to-world matrices c2w (V, 4, 4) with the corrections delta (V, 6) applied in each
    camera's own frame."""
    rot, pos = c2w[:, :3, :3], c2w[:, :3, 3]
    new_rot = rot @ rotation(delta[:, 3:])
    new_pos = pos + jnp.einsum("vij,vj->vi", rot, delta[:, :3])
    top = jnp.concatenate([new_rot, new_pos[:, :, None]], axis=-1)
    return jnp.concatenate([top, c2w[:, 3:]], axis=1)


def penalty(cfg: CameraOptConfig, delta: jax.Array) -> jax.Array:
    """The corrections' regulariser: weighted mean L2 norms of the translations and rotations. It
    holds the views back from drifting together (a motion of every camera at once that the field
    follows), which would leave the eval views, whose poses are not refined, behind; what drift
    remains, the eval views follow (carried)."""
    norm = lambda v: jnp.sqrt(jnp.sum(v * v, axis=-1) + 1e-20)  # noqa: E731 (finite gradient at 0)
    return cfg.trans_penalty * jnp.mean(norm(delta[:, :3])) + cfg.rot_penalty * jnp.mean(norm(delta[:, 3:]))


def summary(delta: jax.Array) -> dict[str, jax.Array]:
    """Scalars to log: the corrections' mean and largest translation (world units) and rotation
    (degrees)."""
    t = jnp.sqrt(jnp.sum(delta[:, :3] ** 2, axis=-1))
    r = jnp.degrees(jnp.sqrt(jnp.sum(delta[:, 3:] ** 2, axis=-1)))
    return {"camera_shift_mean": jnp.mean(t), "camera_shift_max": jnp.max(t),
            "camera_turn_deg_mean": jnp.mean(r), "camera_turn_deg_max": jnp.max(r)}


def refined_c2w(c2w: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The refined camera-to-world matrices (V, 4, 4) on the host (written to the run)."""
    return np.asarray(corrected(jnp.asarray(c2w, jnp.float32), jnp.asarray(delta, jnp.float32)))


def carried_views(views: Views, train: Cameras, refined: np.ndarray) -> Views:
    """The eval views with their cameras carried along with the training cameras `train`, refined
    to the poses `refined` (V, 4, 4) (carried)."""
    return views.posed(carried(views.cameras.c2w, train.c2w, refined))


def carried(c2w: np.ndarray, given: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """Cameras c2w (E, 4, 4) that were not refined (the eval views) carried along with the
    training views' refinement, from their poses as given (V, 4, 4) to refined (V, 4, 4): moved
    by the training views' common motion (common_motion).

    The training views can drift together, turning or shifting the field's whole frame with them
    (a motion no photo constrains), and the eval views, posed in the old frame, would then see the
    scene from beside where they stood. What each training view moved besides is not carried: it
    is that view's own error where the views' errors are independent (the generated scene's test,
    where carrying the two nearest views' residuals took held-out PSNR from 20.95 to 13.86 dB),
    though on the fox it was a smooth bend of the whole path (21.90 -> 26.65 dB; docs/captures.md).
    Nothing of the eval images is used; tensorf.eval --fit-poses fits them instead."""
    return common_motion(np.asarray(given, np.float64), np.asarray(refined, np.float64)) @ np.asarray(c2w, np.float64)


def common_motion(given: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """The world transform M (4, 4), a rotation and a translation, with M @ given[v] closest to
    refined[v] over the views: the rotation is the chordal mean of the views' world-frame turns
    (orientations pin it down better than centres that moved a few thousandths), the translation
    the mean of what then remains between the centres."""
    m = np.einsum("nij,nkj->ik", refined[:, :3, :3], given[:, :3, :3])
    u, _, vt = np.linalg.svd(m)
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = np.mean(refined[:, :3, 3] - given[:, :3, 3] @ rot.T, axis=0)
    return out


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation r (3, 3) and translation t of the similarity minimising |s r src + t - dst|^2
    over points src, dst (N, 3) (Umeyama 1991): what takes recovered camera centres into the true
    frame before they are compared (tests/test_poses.py, benchmarks/lego_from_photos.py)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ fix @ vt
    s = float(np.trace(np.diag(sig) @ fix) / ((src - mu_s) ** 2).sum(1).mean())
    return s, r, mu_d - s * r @ mu_s


def pose_errors(c2w: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean rotation error (degrees) and camera-centre distance (world units) of poses c2w
    (N, 4, 4) against the true ones (benchmarks/pose_refine.py)."""
    c2w, truth = np.asarray(c2w, np.float64), np.asarray(truth, np.float64)
    cos = (np.einsum("nji,nji->n", c2w[:, :3, :3], truth[:, :3, :3]) - 1.0) / 2.0
    degrees = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return float(degrees.mean()), float(np.linalg.norm(c2w[:, :3, 3] - truth[:, :3, 3], axis=-1).mean())
