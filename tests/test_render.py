"""Volume rendering against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.data.rays import Rays
from tensorf.render import composite, compositing_weights, ray_box_interval, stratified_samples, top_k_samples


def _slab(n=256, sigma=3.0, lo=0.4, hi=1.1, k=None, color=(0.2, 0.6, 0.9)):
    """Rays along +z from z=0 through [0, 2]; density sigma where lo <= z < hi."""
    t0, t1 = jnp.zeros(4), jnp.full(4, 2.0)
    t, step = stratified_samples(t0, t1, n, None)
    dens = jnp.where((t >= lo) & (t < hi), sigma, 0.0)
    w = compositing_weights(dens, step)
    idx = top_k_samples(w, k or n)
    rgb = jnp.broadcast_to(jnp.asarray(color), idx.shape + (3,))
    return composite(w, t, idx, rgb), w


def test_constant_slab_matches_closed_form_transmittance():
    sigma, lo, hi = 3.0, 0.4, 1.1
    out, _ = _slab(sigma=sigma, lo=lo, hi=hi)
    trans = np.exp(-sigma * (hi - lo))
    np.testing.assert_allclose(out.opacity, 1 - trans, atol=2e-3)
    expected = np.array([0.2, 0.6, 0.9]) * (1 - trans) + 1.0 * trans  # white background
    np.testing.assert_allclose(out.rgb, np.broadcast_to(expected, (4, 3)), atol=2e-3)
    # Expected depth: integral of t sigma e^{-sigma (t - lo)} over the slab.
    a, L = lo, hi - lo
    depth = (a + 1 / sigma) * (1 - trans) - L * trans
    np.testing.assert_allclose(out.depth, depth, atol=5e-3)


def test_top_k_rescales_to_full_opacity():
    full, w = _slab(n=256, k=256)
    part, _ = _slab(n=256, k=8)
    # Only 8 of ~90 occupied samples shaded, yet a constant colour composites identically.
    assert int(jnp.sum(w[0] > 1e-4)) > 8
    np.testing.assert_allclose(part.rgb, full.rgb, atol=1e-5)
    np.testing.assert_allclose(part.opacity, full.opacity, atol=1e-6)


def test_ray_box_interval_and_misses():
    aabb = jnp.asarray([[-1.0, -1, -1], [1, 1, 1]])
    rays = Rays(
        origins=jnp.asarray([[0.0, 0, 4], [3.0, 3, 4]]), directions=jnp.asarray([[0.0, 0, -1], [0.0, 0, -1]])
    )
    t0, t1 = ray_box_interval(rays, aabb, 2.0, 6.0)
    np.testing.assert_allclose([t0[0], t1[0]], [3.0, 5.0], atol=1e-6)
    assert t1[1] <= t0[1]  # miss: empty interval, so no samples carry weight
    t, step = stratified_samples(t0, t1, 8, None)
    assert float(step[1]) == 0.0


def test_each_ray_draws_its_own_jitter():
    t, _ = stratified_samples(jnp.zeros(64), jnp.ones(64), 4, jax.random.key(0))
    offsets = np.asarray(t[:, 0] * 4)
    assert len(np.unique(np.round(offsets, 6))) == 64
    assert np.all((offsets >= 0) & (offsets < 1))
