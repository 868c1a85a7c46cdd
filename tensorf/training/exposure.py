"""Per-photo exposure: an affine colour map per training view, learned with the field. A phone
changes exposure and white balance from photo to photo; one field cannot show a surface brighter
in one photo and darker in the next, so without the maps it averages them into blur and floaters
(each view's colour differences explained by geometry only it sees).

Each training view v has raw parameters raw[v] (3, 4), zero at the start. Its map is
[A | b] = [I | 0] + raw[v] - mean(raw): the maps' mean is the identity whatever they learn, which
fixes the gauge (a field with colours M c + m and maps [A M^-1 | b - A M^-1 m] render every photo
the same). So the field's colours are the photos' average appearance, and every render that
carries no map (eval views, orbits, the viewer) shows that, with nothing to store beside the
field. Rays.exposure carries each ray's map into compositing (tensorf.render.exposed).

NeRF in the Wild (Martin-Brualla et al. 2021) and nerfacto learn a per-image appearance code fed
to the colour network; Urban Radiance Fields (Rematas et al. 2022) maps each image's colours
through an affine transform as here. The map cannot change what the field looks like from
another view, only each photo's overall colour: it explains exposure and white balance and
nothing view-dependent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tensorf.config import ExposureConfig


def exposure_tx() -> optax.GradientTransformation:
    """The maps' own Adam (their learning rate is applied in the step: exposure_lr)."""
    return optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-15)


def initial_exposure(views: int) -> dict:
    """Identity maps for `views` training views and their optimizer state, as entries of the
    training views' learned state (the step's `cams`, checkpointed as "cameras")."""
    raw = jnp.zeros((views, 3, 4), jnp.float32)
    return {"exposure": raw, "exposure_opt": exposure_tx().init(raw)}


def exposure_lr(cfg: ExposureConfig, sched) -> jax.Array:
    """The maps' learning rate at schedule position `sched`: log-linear from cfg.lr to
    cfg.lr_final over cfg.decay_steps, then held."""
    t = jnp.clip(jnp.asarray(sched, jnp.float32) / max(cfg.decay_steps, 1), 0.0, 1.0)
    return jnp.exp((1.0 - t) * jnp.log(jnp.float32(cfg.lr)) + t * jnp.log(jnp.float32(cfg.lr_final)))


def maps(raw: jax.Array, mode: str = "affine") -> jax.Array:
    """The views' colour maps (V, 3, 4) from their raw parameters (V, 3, 4): identity plus each
    view's difference from the mean, so that the maps average to the identity. mode "gain" keeps
    only the diagonal (a gain per channel: what a change of exposure or white balance does);
    "affine" all of it (a colour matrix and an offset)."""
    if mode == "gain":
        raw = raw * jnp.eye(3, 4, dtype=raw.dtype)  # the other entries' gradients are zero: they stay 0
    return jnp.eye(3, 4, dtype=raw.dtype) + raw - jnp.mean(raw, axis=0)


def penalty(cfg: ExposureConfig, raw: jax.Array) -> jax.Array:
    """The maps' mean squared distance from the identity, weighted (0 leaves it out)."""
    if not cfg.penalty:
        return jnp.float32(0.0)
    return cfg.penalty * jnp.mean(jnp.sum((maps(raw, cfg.mode) - jnp.eye(3, 4)) ** 2, axis=(-2, -1)))


def summary(raw: jax.Array, mode: str) -> dict[str, jax.Array]:
    """Scalars to log: how far the views' maps spread, as the smallest and largest gain (each
    map's mean diagonal) over the views, and the mean absolute offset."""
    m = maps(raw, mode)
    gain = jnp.mean(jnp.diagonal(m[..., :3], axis1=-2, axis2=-1), axis=-1)
    return {"exposure_gain_min": jnp.min(gain), "exposure_gain_max": jnp.max(gain),
            "exposure_offset_mean": jnp.mean(jnp.abs(m[..., 3]))}
