"""Fixed-shape ray sampling and volume compositing, shared by every model.

All shapes are static: B rays x N samples, then the k highest-weight samples per ray. Nothing
here indexes with a boolean mask, so it traces once per (B, N, k) and shards along B.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax_dataclasses as jdc
import numpy as np
from jax.sharding import Mesh

from tensorf.chunked import map_chunks
from tensorf.data.rays import Rays
from tensorf.intervals import Spacing, invert_cdf
from tensorf.parallel import jit_over_rows, replicate, rows_per_call


@jdc.pytree_dataclass
class RenderOutput:
    """rgb (B, 3) in [0, 1] over the background; depth (B,) expected distance; opacity (B,) in
    [0, 1]; dropped (B,): live samples of the ray that a fixed work budget left out (0 when none
    was set); median_depth (B,): the distance of the sample where the ray's weights reach half
    their sum (a ray that grazes one surface and meets another lands on one of them, not between:
    point clouds; training never reads it, so its step does not compute it)."""

    rgb: jax.Array
    depth: jax.Array
    opacity: jax.Array
    dropped: jax.Array
    median_depth: jax.Array


def median_depth(weights: jax.Array, t: jax.Array) -> jax.Array:
    """(B,): t (B, N) at the first sample where the cumulative weights (B, N) reach half the ray's
    opacity (nerfstudio's median depth takes half of 1; half the ray's own sum keeps a faint
    ray's median inside its weights)."""
    cumulative = jnp.cumsum(weights, axis=-1)
    index = jnp.argmax(cumulative >= 0.5 * cumulative[:, -1:], axis=-1)
    return jnp.take_along_axis(t, index[:, None], axis=-1)[:, 0]


def ray_uniforms(keys: jax.Array | None) -> jax.Array | None:
    """One uniform number in [0, 1) per ray from its own key (B,): the same for a ray whatever
    batch or device shard it is drawn in. None for None (deterministic rendering)."""
    return None if keys is None else jax.vmap(jax.random.uniform)(keys)


def ray_box_interval(rays: Rays, aabb: jax.Array, near: float, far: float) -> tuple[jax.Array, jax.Array]:
    """Entry and exit distance of each ray in the box, clipped to [near, far]. Misses give t1 <= t0."""
    d = jnp.where(jnp.abs(rays.directions) < 1e-9, 1e-9, rays.directions)
    ta = (aabb[0] - rays.origins) / d
    tb = (aabb[1] - rays.origins) / d
    t0 = jnp.clip(jnp.max(jnp.minimum(ta, tb), axis=-1), near, far)
    t1 = jnp.clip(jnp.min(jnp.maximum(ta, tb), axis=-1), near, far)
    return t0, t1


def marched_samples(
    t0: jax.Array, t1: jax.Array, step: jax.Array, n: int, offset: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """n samples a fixed `step` apart from each ray's entry t0 (official sample_ray).

    offset (B,) in [0, 1): each ray's jitter in steps (official: one random offset per ray);
    None places samples at the middle of each step. Returns t (B, n) and inside (B, n): the
    samples before the ray's exit t1. A short chord therefore has few samples inside, and every
    sample stands for the same length.
    """
    if offset is None:
        offset = jnp.full(t0.shape, 0.5)
    t = t0[:, None] + (jnp.arange(n) + offset[:, None]) * step
    return t, t < t1[:, None]


def contract(x: jax.Array, norm: str, shell: float = 1.0) -> jax.Array:
    """mip-NeRF 360's scene contraction of points (..., 3): the identity where |x| <= 1, else
    (1 + shell - shell/|x|) x/|x|, so all of space maps into radius 1 + shell (mip-NeRF 360:
    shell 1, radius 2). norm "linf" (the contracted space is the cube [-(1 + shell), 1 + shell]^3,
    which a grid fills) or "l2" (the ball). A thinner shell leaves a grid's cells to the unit
    region, as DirectVoxGO v2 does (lib/dcvgo.py, bg_len 0.2): the shell's outer face keeps the
    grid's full resolution across, which is what a distant backdrop needs; only depth beyond
    the unit region gets coarser. Continuous with a continuous derivative at |x| = 1 only for
    shell 1; the field does not need more than continuity."""
    if norm == "linf":
        # The largest |x_k| taken by its index, not by jnp.max: max's derivative divides by the
        # count of entries equal to the max, and a compiler that recomputes x inside a fused
        # derivative (an FMA contracted in one copy, not the other) can leave that count 0, so 0/0
        # (mip-NeRF 360's Jacobian went NaN at XLA's backend level 0; tests/test_mipnerf.py).
        ax = jnp.abs(x)
        mag = jnp.take_along_axis(ax, jnp.argmax(ax, axis=-1, keepdims=True), axis=-1)
    else:
        mag = jnp.linalg.norm(x, axis=-1, keepdims=True)
    safe = jnp.maximum(mag, 1.0)
    return jnp.where(mag <= 1.0, x, (1.0 + shell - shell / safe) * (x / safe))



def uncontract(y: np.ndarray, norm: str, shell: float = 1.0) -> np.ndarray:
    """World points (..., 3) of contracted points y (contract's inverse): the identity inside the
    unit region, else |x| = shell / (1 + shell - |y|) along y's direction; the shell's outer
    face (|y| = 1 + shell, infinity) and beyond give non-finite points."""
    y = np.asarray(y, np.float64)
    mag = np.abs(y).max(-1, keepdims=True) if norm == "linf" else np.linalg.norm(y, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        far = np.where(mag < 1.0 + shell, shell / (1.0 + shell - mag), np.inf)
        return np.where(mag <= 1.0, y, y / np.maximum(mag, 1.0) * far)

def unit_region_exit(rays: Rays, norm: str) -> jax.Array:
    """Distance (B,) at which each ray leaves the unit region (the cube |x|_inf <= 1 or the unit
    ball); 0 for a ray that never enters it ahead of its origin."""
    if norm == "linf":
        box = jnp.asarray([[-1.0] * 3, [1.0] * 3], jnp.float32)
        t0, t1 = ray_box_interval(rays, box, 0.0, jnp.inf)
        return jnp.where(t1 > t0, t1, 0.0)
    b = jnp.sum(rays.origins * rays.directions, axis=-1)
    c = jnp.sum(rays.origins**2, axis=-1) - 1.0
    disc = b * b - c
    return jnp.maximum(jnp.where(disc > 0, -b + jnp.sqrt(jnp.maximum(disc, 0.0)), 0.0), 0.0)


def unbounded_samples(near: float, far: float, exit_t: jax.Array, n: int, offset: jax.Array | None
                      ) -> tuple[jax.Array, jax.Array]:
    """t (B, n) and the bins' edges (B, n + 1) along rays through an unbounded scene: the first
    n // 2 bins spread evenly from near to where the ray leaves the unit region (exit_t, (B,)),
    the rest evenly in disparity (1/t) from there to far, as mip-NeRF 360 spaces them;
    contracted, both halves come out about evenly spaced. offset (B,) in [0, 1) jitters each
    ray's samples within their bins (None: bin middles)."""
    n_in = n // 2
    s_edges = jnp.concatenate([0.5 * jnp.arange(n_in + 1, dtype=jnp.float32) / n_in,
                               0.5 + 0.5 * jnp.arange(1, n - n_in + 1, dtype=jnp.float32) / (n - n_in)])
    spacing = Spacing.disparity_beyond(near, far, exit_t)
    edges = spacing.t(jnp.broadcast_to(s_edges, (exit_t.shape[0], n + 1)))
    frac = 0.5 if offset is None else offset[:, None]
    return edges[:, :-1] + frac * (edges[:, 1:] - edges[:, :-1]), edges


def stratified_samples(near: float, far: float, n: int, u: jax.Array | None, batch: int) -> jax.Array:
    """t (B, n): one sample in each of n equal bins of [near, far] (NeRF's stratified sampling;
    JaxNeRF bins). u (B, n) uniforms place each in its bin; None puts them on the bins' edges
    linspace(near, far, n), as JaxNeRF renders deterministically."""
    edges = jnp.linspace(near, far, n)
    if u is None:
        return jnp.broadcast_to(edges, (batch, n))
    mids = 0.5 * (edges[1:] + edges[:-1])
    lower = jnp.concatenate([edges[:1], mids])
    upper = jnp.concatenate([mids, edges[-1:]])
    return lower + (upper - lower) * u


def pdf_samples(bins: jax.Array, weights: jax.Array, n: int, u: jax.Array | None) -> jax.Array:
    """t (B, n), sorted: inverse-CDF samples of the piecewise-constant density with `weights`
    (B, M) on the intervals between `bins` (B, M + 1) (NeRF's hierarchical sampling). u (B, n)
    uniforms; None takes evenly spaced quantiles. No gradient flows through the samples."""
    weights = jax.lax.stop_gradient(weights) + 1e-5  # JaxNeRF's padding: no empty PDF
    if u is None:
        u = jnp.broadcast_to(jnp.linspace(0.0, 1.0 - 1e-6, n), (bins.shape[0], n))
    return jax.lax.stop_gradient(invert_cdf(jnp.sort(u, axis=-1), bins, weights))


def compositing_weights(sigma: jax.Array, delta: jax.Array) -> jax.Array:
    """Volume-rendering weights w_i = T_i (1 - exp(-sigma_i delta_i)). sigma (B, N); delta a
    scalar, (B,) or (B, N)."""
    delta = jnp.asarray(delta)
    tau = sigma * (delta[:, None] if delta.ndim == 1 else delta)
    alpha = 1.0 - jnp.exp(-tau)
    # Exclusive cumulative sum of optical depth: T_i = exp(-sum_{j<i} tau_j).
    trans = jnp.exp(-jnp.concatenate([jnp.zeros_like(tau[:, :1]), jnp.cumsum(tau[:, :-1], axis=-1)], axis=-1))
    return alpha * trans


def near_camera_gradient(x: jax.Array, t: jax.Array, distance: float) -> jax.Array:
    """x unchanged, its gradient scaled by min(1, (t / distance)^2), t the sample's distance from
    the camera (broadcast against x). A view's rays sample the space near its camera ~1/t^2 more
    densely than far away, and a little density there covers many of its pixels and few of any
    other view's, so that space gets an outsized share of the gradient and learns floaters that
    explain one view each. Philip & Deschaintre 2023, "Floaters No More" (gradient-scaling.github.io,
    whose code applies clamp(ray_dist^2, 0, 1) to the colours' and densities' gradients).
    A distance of 0 turns it off (x returned as is)."""
    if distance <= 0:
        return x
    s = jax.lax.stop_gradient(jnp.clip(jnp.square(t / distance), 0.0, 1.0))
    return x * s + jax.lax.stop_gradient(x * (1.0 - s))


def top_k_samples(weights: jax.Array, k: int) -> jax.Array:
    """Indices (B, min(k, N)) of each ray's highest-weight samples, heaviest first."""
    _, idx = jax.lax.top_k(jax.lax.stop_gradient(weights), min(k, weights.shape[-1]))
    return idx


def ray_background(rays: Rays, flat: float):
    """What lies behind each ray: its own background (B, 3) when it carries one (turntable
    captures), else the scene's flat intensity."""
    return flat if rays.background is None else rays.background


def exposed(color: jax.Array, opacity: jax.Array, exposure: jax.Array | None) -> jax.Array:
    """The field's composited colour (B, 3) (opacity (B,) of it) as the photo's exposure shows
    it: A @ color + b * opacity for each ray's affine colour map exposure (B, 3, 4) = [A | b]
    (Rays.exposure), unchanged for None. The background behind the field is not mapped: it is
    given (a flat colour, or the camera's own background images)."""
    if exposure is None:
        return color
    return jnp.einsum("bij,bj->bi", exposure[..., :3], color) + exposure[..., 3] * opacity[:, None]


def composite_all(weights: jax.Array, rgb: jax.Array, t: jax.Array, background,
                  exposure: jax.Array | None = None) -> RenderOutput:
    """Colour over the background (a float, or (B, 3) per ray: ray_background), depth and opacity
    from every sample's weight (B, N), colour (B, N, 3) and distance t (B, N) (the MLP models,
    which shade every sample); the field's colour through each ray's exposure (exposed)."""
    opacity = jnp.sum(weights, axis=-1)
    field = exposed(jnp.sum(weights[..., None] * rgb, axis=-2), opacity, exposure)
    color = field + (1.0 - opacity[:, None]) * background
    return RenderOutput(rgb=color, depth=jnp.sum(weights * t, axis=-1), opacity=opacity,
                        dropped=jnp.zeros(weights.shape[:1], jnp.float32), median_depth=median_depth(weights, t))


def composite(
    weights: jax.Array,
    t: jax.Array,
    top_idx: jax.Array,
    top_rgb: jax.Array,
    shaded: jax.Array,
    dropped: jax.Array,
    background,
    exposure: jax.Array | None = None,
) -> RenderOutput:
    """Colour from the shaded top-k samples, depth and opacity from all samples.

    shaded (B, k) marks which of the top-k samples were given a colour. The weights of the shaded
    samples are rescaled to the ray's full opacity, so mass left out (outside the top k, or too
    faint to shade) still counts as surface coloured like the shaded samples rather than leaking
    background through. The colour is clamped to [0, 1] (official renderer): shading heads such as
    SH's relu(x + 0.5) are unbounded above. The field's colour goes through each ray's exposure
    first (exposed).
    """
    opacity = jnp.sum(weights, axis=-1)
    w_top = jnp.where(shaded, jnp.take_along_axis(weights, top_idx, axis=-1), 0.0)
    scale = opacity / jnp.maximum(jnp.sum(w_top, axis=-1), 1e-10)
    field = exposed(jnp.sum(w_top[..., None] * top_rgb, axis=-2) * scale[:, None], opacity, exposure)
    rgb = field + (1.0 - opacity[:, None]) * background
    depth = jnp.sum(weights * t, axis=-1)
    return RenderOutput(rgb=jnp.clip(rgb, 0.0, 1.0), depth=depth, opacity=opacity, dropped=dropped,
                        median_depth=median_depth(weights, t))


@functools.lru_cache(maxsize=8)
def _chunk_renderer(model, mesh: Mesh | None, with_background: bool):
    """Jitted (params, origins, directions, radii[, background]) -> RenderOutput; with a mesh of
    several devices each device renders its share of the chunk."""

    def render(params, origins, directions, radii, background=None):
        return model.render(params, Rays(origins=origins, directions=directions, radii=radii, background=background),
                            None)

    return jit_over_rows(render, mesh, 3 + with_background)


def render_rays_chunked(model, params, rays: Rays, chunk: int, mesh: Mesh | None = None) -> RenderOutput:
    """Deterministic render of any number of rays, `chunk` at a time (bounded memory), spread
    over the mesh's devices when one is given. Returns numpy-backed outputs with the rays'
    leading shape."""
    lead = rays.origins.shape[:-1]
    render = _chunk_renderer(model, mesh, rays.background is not None)
    if mesh is not None and mesh.size > 1:
        params = replicate(mesh, params)
    # Rays that are not a camera's pixels have no footprint: radius 0.
    radii = np.zeros(lead or (1,), np.float32).reshape(-1) if rays.radii is None else np.asarray(rays.radii).reshape(-1)
    rows = [rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3), radii]
    if rays.background is not None:
        rows.append(np.asarray(rays.background).reshape(-1, 3))
    out = map_chunks(lambda *part: render(params, *part), *rows, chunk=chunk, multiple=rows_per_call(mesh))
    return jax.tree.map(lambda x: x.reshape(*lead, *x.shape[1:]), out)


def compacted_map(fn, inputs: tuple[jax.Array, ...], live: jax.Array, budget: int) -> tuple[jax.Array, jax.Array]:
    """fn evaluated only at the live entries of a (B, K) table, packed into a fixed budget of slots.

    inputs: arrays (B, K, ...); live (B, K) bool; fn maps rows (M, ...) to outputs (M, ...). Live
    entries take slots by their rank among their row's live entries: every row's first live
    entry, then every row's second, and so on. A batch over budget therefore loses the last live
    entries of its busiest rows, never all of one row's: callers order each row's columns from
    most to least important (samples front to back, top-k samples heaviest first). Returns fn's
    output (B, K, ...) with zeros where an entry was not evaluated, and kept (B, K) bool. Static
    shapes throughout: the budget, not the number of live entries, sets the work.
    """
    b, k = live.shape
    rank = jnp.cumsum(live, axis=1, dtype=jnp.int32) - 1  # of each live entry within its row
    has = (rank[:, -1:] >= jnp.arange(k, dtype=jnp.int32)[None, :]).astype(jnp.int32)  # row has rank r
    per_rank = jnp.sum(has, axis=0)
    start = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(per_rank)[:-1]])  # entries of lower ranks
    rows_before = jnp.cumsum(has, axis=0) - has  # earlier rows holding the same rank
    r = jnp.where(live, rank, 0)
    pos = start[r] + jnp.take_along_axis(rows_before, r, axis=1)
    kept = live & (pos < budget)
    slot = jnp.where(kept, pos, budget).reshape(-1)  # slot `budget` is a dump for entries not evaluated
    source = jnp.zeros(budget + 1, jnp.int32).at[slot].set(jnp.arange(b * k, dtype=jnp.int32))[:budget]
    out = fn(*(x.reshape(b * k, *x.shape[2:])[source] for x in inputs))
    padded = jnp.concatenate([out, jnp.zeros((1, *out.shape[1:]), out.dtype)])
    return padded[slot].reshape(b, k, *out.shape[1:]), kept
