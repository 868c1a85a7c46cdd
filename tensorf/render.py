"""Fixed-shape ray sampling and volume compositing, shared by every model.

All shapes are static: B rays x N samples, then the k highest-weight samples per ray. Nothing
here indexes with a boolean mask, so it traces once per (B, N, k) and shards along B.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax_dataclasses as jdc

from tensorf.data.rays import Rays


@jdc.pytree_dataclass
class RenderOutput:
    """rgb (B, 3) on the white background; depth (B,) expected distance; opacity (B,) in [0, 1];
    dropped (B,): live samples of the ray that a fixed work budget left out (0 when none was set)."""

    rgb: jax.Array
    depth: jax.Array
    opacity: jax.Array
    dropped: jax.Array


def ray_box_interval(rays: Rays, aabb: jax.Array, near: float, far: float) -> tuple[jax.Array, jax.Array]:
    """Entry and exit distance of each ray in the box, clipped to [near, far]. Misses give t1 <= t0."""
    d = jnp.where(jnp.abs(rays.directions) < 1e-9, 1e-9, rays.directions)
    ta = (aabb[0] - rays.origins) / d
    tb = (aabb[1] - rays.origins) / d
    t0 = jnp.clip(jnp.max(jnp.minimum(ta, tb), axis=-1), near, far)
    t1 = jnp.clip(jnp.min(jnp.maximum(ta, tb), axis=-1), near, far)
    return t0, t1


def stratified_samples(
    t0: jax.Array, t1: jax.Array, n: int, key: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """n evenly spaced samples per ray over [t0, t1], shifted by one random offset per ray.

    Each ray draws its own offset (the official jitter); key=None places samples at bin centres.
    Returns t (B, n) and the per-ray spacing (B,), zero for rays that miss the box.
    """
    step = jnp.maximum(t1 - t0, 0.0) / n
    if key is None:
        offset = jnp.full(t0.shape, 0.5)
    else:
        offset = jax.random.uniform(key, t0.shape)
    t = t0[:, None] + (jnp.arange(n) + offset[:, None]) * step[:, None]
    return t, step


def compositing_weights(sigma: jax.Array, delta: jax.Array) -> jax.Array:
    """Volume-rendering weights w_i = T_i (1 - exp(-sigma_i delta_i)). sigma (B, N), delta (B,) or (B, N)."""
    tau = sigma * (delta if delta.ndim == sigma.ndim else delta[:, None])
    alpha = 1.0 - jnp.exp(-tau)
    # Exclusive cumulative sum of optical depth: T_i = exp(-sum_{j<i} tau_j).
    trans = jnp.exp(-jnp.concatenate([jnp.zeros_like(tau[:, :1]), jnp.cumsum(tau[:, :-1], axis=-1)], axis=-1))
    return alpha * trans


def top_k_samples(weights: jax.Array, k: int) -> jax.Array:
    """Indices (B, min(k, N)) of each ray's highest-weight samples, heaviest first."""
    _, idx = jax.lax.top_k(jax.lax.stop_gradient(weights), min(k, weights.shape[-1]))
    return idx


def composite(
    weights: jax.Array,
    t: jax.Array,
    top_idx: jax.Array,
    top_rgb: jax.Array,
    shaded: jax.Array | None = None,
    dropped: jax.Array | None = None,
    background: float = 1.0,
) -> RenderOutput:
    """Colour from the shaded top-k samples, depth and opacity from all samples.

    shaded (B, k) marks which of the top-k samples were given a colour (None: all). The weights of
    the shaded samples are rescaled to the ray's full opacity, so mass left out (outside the top k,
    or too faint to shade) still counts as surface coloured like the shaded samples rather than
    leaking background through.
    """
    opacity = jnp.sum(weights, axis=-1)
    w_top = jnp.take_along_axis(weights, top_idx, axis=-1)
    if shaded is not None:
        w_top = jnp.where(shaded, w_top, 0.0)
    scale = opacity / jnp.maximum(jnp.sum(w_top, axis=-1), 1e-10)
    rgb = jnp.sum(w_top[..., None] * top_rgb, axis=-2) * scale[:, None] + (1.0 - opacity[:, None]) * background
    depth = jnp.sum(weights * t, axis=-1)
    if dropped is None:
        dropped = jnp.zeros_like(opacity)
    return RenderOutput(rgb=rgb, depth=depth, opacity=opacity, dropped=dropped)


def _render_chunk(model, params, origins, directions):
    return model.render(params, Rays(origins=origins, directions=directions), None)


_render_chunk_jit = jax.jit(_render_chunk, static_argnums=0)


def render_rays_chunked(model, params, rays: Rays, chunk: int) -> RenderOutput:
    """Deterministic render of any number of rays, `chunk` at a time (bounded memory).
    Returns numpy-backed outputs with the rays' leading shape."""
    from tensorf.chunked import map_chunks

    lead = rays.origins.shape[:-1]
    out = map_chunks(
        lambda o, d: _render_chunk_jit(model, params, o, d),
        rays.origins.reshape(-1, 3),
        rays.directions.reshape(-1, 3),
        chunk=chunk,
    )
    return RenderOutput(
        rgb=out.rgb.reshape(*lead, 3),
        depth=out.depth.reshape(lead),
        opacity=out.opacity.reshape(lead),
        dropped=out.dropped.reshape(lead),
    )


def compacted_map(fn, inputs: tuple[jax.Array, ...], live: jax.Array, budget: int) -> tuple[jax.Array, jax.Array]:
    """fn evaluated only at live rows, packed into a fixed budget of slots.

    inputs: arrays (M, ...); live (M,) bool. Live rows take slots in order of a cumulative sum, so
    when more than `budget` rows are live, the last ones in `live`'s order are dropped: callers
    order rows so that the least important come last. Returns fn's output (M, ...) with zeros
    where a row was not evaluated, and kept (M,) bool. Static shapes throughout: the budget, not
    the number of live rows, sets the work.
    """
    m = live.shape[0]
    pos = jnp.cumsum(live) - 1
    kept = live & (pos < budget)
    slot = jnp.where(kept, pos, budget)  # slot `budget` is a dump for rows not evaluated
    source = jnp.zeros(budget + 1, jnp.int32).at[slot].set(jnp.arange(m, dtype=jnp.int32))[:budget]
    out = fn(*(x[source] for x in inputs))
    padded = jnp.concatenate([out, jnp.zeros((1, *out.shape[1:]), out.dtype)])
    return padded[slot], kept
