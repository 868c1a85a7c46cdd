"""Rays as intervals: a normalised distance s in [0, 1] along each ray, proposal resampling, and
mip-NeRF 360's interlevel and distortion losses (Barron et al. 2022, sections 3 and 4).

A ray's samples are bins between sorted edges in s. The spacing maps s to ray distance t: linear
over [near, far] in a bounded scene; in an unbounded one, the first half of s linear up to where
the ray leaves the unit region and the second half even in disparity out to far (mip-NeRF 360's
spacing, so both halves come out about evenly spaced in contracted space). Histograms, resampling
and both losses live in s, as mip-NeRF 360 computes them, so their scale does not depend on the
scene's units. Everything has fixed shapes: (B, n + 1) edges and (B, n) weights per level.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import jax_dataclasses as jdc

EPS = 1e-7


@jdc.pytree_dataclass
class Spacing:
    """Per-ray map from normalised distance s to distance t. near, far (B,); exit (B,): where the
    ray leaves the unit region (unbounded spacing only; the linear one ignores it)."""

    near: jax.Array
    far: jax.Array
    exit: jax.Array
    unbounded: jdc.Static[bool]

    @staticmethod
    def linear(near, far) -> "Spacing":
        near, far = jnp.asarray(near, jnp.float32), jnp.asarray(far, jnp.float32)
        return Spacing(near=near, far=far, exit=far, unbounded=False)

    @staticmethod
    def disparity_beyond(near: float, far: float, exit_t: jax.Array) -> "Spacing":
        b = exit_t.shape
        mid = jnp.clip(exit_t, near + 1e-3, far)
        return Spacing(near=jnp.full(b, near, jnp.float32), far=jnp.full(b, far, jnp.float32), exit=mid,
                       unbounded=True)

    def t(self, s: jax.Array) -> jax.Array:
        """Distances (B, n) at normalised distances s (B, n)."""
        near, far, mid = self.near[:, None], self.far[:, None], self.exit[:, None]
        if not self.unbounded:
            return near + s * (far - near)
        inner = near + 2.0 * s * (mid - near)
        outer = 1.0 / (1.0 / mid + (2.0 * s - 1.0) * (1.0 / far - 1.0 / mid))
        return jnp.where(s <= 0.5, inner, outer)


def schlick_bias(x: jax.Array, slope: float) -> jax.Array:
    """Schlick's bias curve on [0, 1] (mip-NeRF 360 eq. 18's annealing; nerfacto's `bias`)."""
    return slope * x / ((slope - 1.0) * x + 1.0)


def invert_cdf(u: jax.Array, edges: jax.Array, weights: jax.Array) -> jax.Array:
    """Points (B, n) at quantiles u (B, n) of the piecewise-constant density with `weights`
    (B, M) on the bins between `edges` (B, M + 1). Weights need not be normalised; a ray whose
    weights are all zero gets its quantiles spread evenly over its bins."""
    weights = jnp.maximum(weights, 0.0)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    weights = jnp.where(total > 0, weights, 1.0)
    pdf = weights / jnp.sum(weights, axis=-1, keepdims=True)
    cdf = jnp.concatenate([jnp.zeros_like(pdf[:, :1]), jnp.minimum(1.0, jnp.cumsum(pdf[:, :-1], axis=-1)),
                           jnp.ones_like(pdf[:, :1])], axis=-1)
    idx = jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"))(cdf, u)
    lo, hi = jnp.maximum(idx - 1, 0), jnp.minimum(idx, cdf.shape[-1] - 1)
    c0, c1 = jnp.take_along_axis(cdf, lo, -1), jnp.take_along_axis(cdf, hi, -1)
    b0, b1 = jnp.take_along_axis(edges, lo, -1), jnp.take_along_axis(edges, hi, -1)
    frac = jnp.clip((u - c0) / jnp.where(c1 - c0 < 1e-9, 1.0, c1 - c0), 0.0, 1.0)
    return b0 + frac * (b1 - b0)


def resample_intervals(edges: jax.Array, weights: jax.Array, n: int, jitter: jax.Array | None,
                       anneal: jax.Array | float = 1.0, padding: float = 0.0) -> jax.Array:
    """n new bins (B, n + 1) of [0, 1] drawn from the histogram (edges (B, M + 1), weights (B, M))
    as mip-NeRF 360 draws them (multinerf stepfun.sample_intervals): n stratified quantiles, one
    jitter per ray (B,) in [0, 1) (None: the quantiles' centres, for deterministic renders), the
    new edges halfway between neighbours and the ends mirrored, clipped to [0, 1]. The weights
    are raised to `anneal` first (eq. 18: near 0 early in training, every bin alike; 1 later),
    then every bin gets `padding` more (nerfacto's histogram_padding: each bin keeps a share of
    the samples however little weight it holds; 0 in multinerf). No gradient flows through the
    new edges."""
    weights = jax.lax.stop_gradient(weights)
    width = edges[:, 1:] - edges[:, :-1]
    weights = jnp.where(width > 0, jnp.power(weights + 1e-5, anneal) + padding, 0.0)
    offset = 0.5 if jitter is None else jitter[:, None]
    u = jnp.clip((jnp.arange(n, dtype=jnp.float32) + offset) / n, 0.0, 1.0 - EPS)
    u = jnp.broadcast_to(u, (edges.shape[0], n))
    centres = invert_cdf(u, edges, weights)
    mids = 0.5 * (centres[:, 1:] + centres[:, :-1])
    first = jnp.maximum(0.0, 2.0 * centres[:, :1] - mids[:, :1])
    last = jnp.minimum(1.0, 2.0 * centres[:, -1:] - mids[:, -1:])
    return jax.lax.stop_gradient(jnp.concatenate([first, mids, last], axis=-1))


def propose(levels: tuple[int, ...], final: int, weights_of: Callable[[int, jax.Array], jax.Array],
            jitter: jax.Array | None, anneal: jax.Array | float = 1.0, batch: int | None = None,
            padding: float = 0.0) -> tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]:
    """mip-NeRF 360's proposal sampling: levels[i] bins for proposal i, then `final` bins for the
    model itself. The first level's bins are stratified over [0, 1]; each later level's are drawn
    from the previous level's weights. weights_of(i, edges (B, n + 1)) -> weights (B, n) renders
    proposal i. jitter (B, L + 1) per ray and level, or None. padding: added to every bin of a
    proposal's weights before the next level draws from them (resample_intervals). Returns the
    final edges (B, final + 1) and every proposal's (edges, weights) for the interlevel loss."""
    b = batch if jitter is None else jitter.shape[0]
    edges = jnp.broadcast_to(jnp.asarray([0.0, 1.0], jnp.float32), (b, 2))
    weights = jnp.ones((b, 1), jnp.float32)
    history = []
    for i, n in enumerate((*levels, final)):
        # The first draw is from the uniform histogram: no annealing needed there.
        edges = resample_intervals(edges, weights, n, None if jitter is None else jitter[:, i], anneal if i else 1.0,
                                   padding if i else 0.0)
        if i < len(levels):
            weights = weights_of(i, edges)
            history.append((edges, weights))
    return edges, history


def outer_measure(edges: jax.Array, env_edges: jax.Array, env_weights: jax.Array) -> jax.Array:
    """For each bin (B, n) of `edges` (B, n + 1), the summed weight of the envelope's bins
    (env_edges (B, m + 1), env_weights (B, m)) that overlap it (multinerf stepfun.inner_outer)."""
    cum = jnp.concatenate([jnp.zeros_like(env_weights[:, :1]), jnp.cumsum(env_weights, axis=-1)], axis=-1)
    above = jax.vmap(lambda a, v: jnp.searchsorted(a, v, side="right"))(env_edges, edges)
    lo = jnp.maximum(above - 1, 0)  # last envelope edge at or before each edge
    hi = jnp.minimum(above, env_edges.shape[-1] - 1)  # first envelope edge after it
    return jnp.take_along_axis(cum, hi[:, 1:], -1) - jnp.take_along_axis(cum, lo[:, :-1], -1)


def interlevel_loss(edges: jax.Array, weights: jax.Array, history: list[tuple[jax.Array, jax.Array]]) -> jax.Array:
    """mip-NeRF 360 eq. 13: each proposal's histogram must bound the final weights from above.
    Zero where it does; its gradient reaches only the proposals (the final histogram is held
    fixed). Mean over rays and bins, summed over levels."""
    edges, weights = jax.lax.stop_gradient(edges), jax.lax.stop_gradient(weights)
    loss = jnp.float32(0.0)
    for env_edges, env_weights in history:
        bound = outer_measure(edges, jax.lax.stop_gradient(env_edges), env_weights)
        loss += jnp.mean(jnp.maximum(0.0, weights - bound) ** 2 / (weights + EPS))
    return loss


def distortion_loss(edges: jax.Array, weights: jax.Array) -> jax.Array:
    """mip-NeRF 360 eq. 15, per ray (B,): the double integral of w(s) w(s') |s - s'| over the
    ray's step function, in its O(n) form: bins are sorted, so the pairwise term is a running
    sum; the within-bin term is w^2 ds / 3."""
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    wm = weights * mids
    before_w = jnp.cumsum(weights, axis=-1) - weights
    before_wm = jnp.cumsum(wm, axis=-1) - wm
    pairs = 2.0 * jnp.sum(weights * (mids * before_w - before_wm), axis=-1)
    within = jnp.sum(weights**2 * (edges[:, 1:] - edges[:, :-1]), axis=-1) / 3.0
    return pairs + within
