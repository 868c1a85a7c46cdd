"""Volume rendering against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.data.rays import Rays
from tensorf.render import (
    composite,
    compositing_weights,
    marched_samples,
    near_camera_gradient,
    ray_box_interval,
    ray_uniforms,
    top_k_samples,
)


def _slab(n=256, sigma=3.0, lo=0.4, hi=1.1, k=None, colors=None, threshold=-1.0):
    """Rays along +z from z=0 through [0, 2]; density sigma where lo <= z < hi. colors: a function
    of t giving each sample's RGB (default a constant)."""
    t0, t1 = jnp.zeros(4), jnp.full(4, 2.0)
    step = 2.0 / n
    t, inside = marched_samples(t0, t1, step, n, None)
    assert bool(inside.all())
    dens = jnp.where((t >= lo) & (t < hi), sigma, 0.0)
    w = compositing_weights(dens, step)
    idx = top_k_samples(w, k or n)
    t_top = jnp.take_along_axis(t, idx, axis=-1)
    rgb = (colors or (lambda t: jnp.broadcast_to(jnp.asarray([0.2, 0.6, 0.9]), t.shape + (3,))))(t_top)
    shaded = jnp.take_along_axis(w, idx, axis=-1) > threshold
    return composite(w, t, idx, rgb, shaded, jnp.zeros(4), 1.0), w


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


def _gradient(t):
    """A colour that changes with depth, so that which samples are shaded matters."""
    f = jnp.clip((t - 0.4) / 0.7, 0, 1)[..., None]
    return f * jnp.asarray([1.0, 0.0, 0.2]) + (1 - f) * jnp.asarray([0.0, 0.9, 0.5])


def test_top_k_shades_the_heaviest_samples_and_rescales_to_full_opacity():
    full, w = _slab(n=256, k=256, colors=_gradient)
    part, _ = _slab(n=256, k=8, colors=_gradient)
    assert int(jnp.sum(w[0] > 1e-4)) > 8  # only 8 of ~90 occupied samples shaded
    np.testing.assert_allclose(part.opacity, full.opacity, atol=1e-6)  # opacity counts every sample
    # The 8 heaviest samples are the slab's front (the first 8 steps past z = 0.4): the rescaled
    # colour is theirs, weighted, not the whole slab's average.
    t = (jnp.arange(256) + 0.5) * (2.0 / 256)
    front = (t >= 0.4) & (t < 0.4 + 8 * 2.0 / 256)
    wf = jnp.where(front, w[0], 0.0)
    c = jnp.sum(wf[:, None] * _gradient(t), 0) / jnp.sum(wf) * full.opacity[0] + (1 - full.opacity[0])
    np.testing.assert_allclose(part.rgb[0], c, atol=1e-5)
    assert float(jnp.abs(part.rgb - full.rgb).max()) > 1e-2  # differing colours: the test can fail


def test_unshaded_samples_give_their_weight_to_the_shaded_ones_and_colour_is_clamped():
    # Samples at or below the threshold are not shaded; their weight goes to the shaded ones.
    out, w = _slab(n=256, k=256, colors=_gradient, threshold=0.01)
    t = (jnp.arange(256) + 0.5) * (2.0 / 256)
    heavy = w[0] > 0.01
    assert 0 < int(heavy.sum()) < int((w[0] > 1e-6).sum())
    wh = jnp.where(heavy, w[0], 0.0)
    c = jnp.sum(wh[:, None] * _gradient(t), 0) / jnp.sum(wh) * out.opacity[0] + (1 - out.opacity[0])
    np.testing.assert_allclose(out.rgb[0], c, atol=1e-5)
    # An unbounded shading head (SH: relu(x + 0.5)) cannot push a pixel above 1 (official clamp).
    bright, _ = _slab(colors=lambda t: jnp.full(t.shape + (3,), 3.0))
    assert float(bright.rgb.max()) == 1.0


def test_ray_box_interval_and_misses():
    aabb = jnp.asarray([[-1.0, -1, -1], [1, 1, 1]])
    rays = Rays(
        origins=jnp.asarray([[0.0, 0, 4], [3.0, 3, 4]]), directions=jnp.asarray([[0.0, 0, -1], [0.0, 0, -1]])
    )
    t0, t1 = ray_box_interval(rays, aabb, 2.0, 6.0)
    np.testing.assert_allclose([t0[0], t1[0]], [3.0, 5.0], atol=1e-6)
    assert t1[1] <= t0[1]  # miss: empty interval
    _, inside = marched_samples(t0, t1, 0.25, 8, None)
    assert bool(inside[0].all()) and not bool(inside[1].any())  # so no sample of a miss is live


def test_marching_keeps_a_fixed_step_and_each_ray_draws_its_own_jitter():
    t0 = jnp.zeros(64)
    t1 = jnp.linspace(0.3, 1.0, 64)  # chords of different lengths
    t, inside = marched_samples(t0, t1, 0.1, 12, ray_uniforms(jax.random.split(jax.random.key(0), 64)))
    np.testing.assert_allclose(jnp.diff(t, axis=-1), 0.1, atol=1e-6)  # the same spacing on every ray
    # A short chord has few samples inside; a long one has more (no oversampling of short chords).
    np.testing.assert_array_equal(inside.sum(-1), jnp.sum(t < t1[:, None], -1))
    assert int(inside[0].sum()) <= 3 and int(inside[-1].sum()) >= 9
    offsets = np.asarray(t[:, 0] / 0.1)
    assert len(np.unique(np.round(offsets, 6))) == 64
    assert np.all((offsets >= 0) & (offsets < 1))


def test_a_rays_jitter_depends_on_its_key_alone():
    keys = jax.random.split(jax.random.key(7), 8)
    u = ray_uniforms(keys)
    np.testing.assert_array_equal(ray_uniforms(keys[3:6]), u[3:6])  # not on its batch or shard
    assert ray_uniforms(None) is None


def test_near_camera_gradient_damps_what_near_samples_learn_and_changes_no_render():
    """A pixel's gradient with respect to a sample's density at distance t is scaled by
    min(1, (t / d)^2); the render itself is the same. Distance 0 is the plain gradient."""
    t = jnp.linspace(0.05, 2.0, 64)[None]
    step = jnp.full_like(t, t[0, 1] - t[0, 0])
    sigma = jnp.full_like(t, 0.5)

    def pixel(sigma, d):
        s = near_camera_gradient(sigma, t, d)
        w = compositing_weights(s, step)
        return jnp.sum(w * jnp.sin(3 * t))  # a colour that varies along the ray

    plain, scaled = pixel(sigma, 0.0), pixel(sigma, 1.0)
    np.testing.assert_allclose(scaled, plain, rtol=1e-6)
    g_plain, g_scaled = jax.grad(pixel)(sigma, 0.0), jax.grad(pixel)(sigma, 1.0)
    expected = g_plain * jnp.clip(t**2, 0.0, 1.0)
    np.testing.assert_allclose(g_scaled, expected, rtol=1e-5, atol=1e-9)
    near, far = t[0] < 0.5, t[0] > 1.0
    assert float(jnp.abs(g_scaled[0, near]).sum()) < 0.25 * float(jnp.abs(g_plain[0, near]).sum())
    np.testing.assert_allclose(g_scaled[0, far], g_plain[0, far], rtol=1e-6)


def test_median_depth_lands_on_a_surface_where_expected_depth_falls_between():
    """A pixel on an edge: 45% of its weight on a near surface, 50% on one behind. The weights'
    mean lies between the two, in empty space; their median is the far surface's distance."""
    from tensorf.render import median_depth

    t = jnp.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    w = jnp.array([[0.0, 0.45, 0.0, 0.5], [0.6, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(median_depth(w, t), [4.0, 1.0, 1.0])
    expected = jnp.sum(w * t, -1) / jnp.maximum(jnp.sum(w, -1), 1e-9)
    assert 2.0 < float(expected[0]) < 4.0  # the mean: empty space between the surfaces
    # The depth pictures (viewer, orbit GIFs, TensorBoard) colour the edge pixel as the far
    # surface's full opacity would, faded by its 0.95 opacity: not as the empty space between.
    from tensorf.visualize import colormap, depth_image

    picture = depth_image(np.asarray(median_depth(w, t)), np.asarray(jnp.sum(w, -1)), 1.0, 4.0)
    np.testing.assert_allclose(picture[0], 0.95 * colormap(np.float64(1.0)) + 0.05, atol=1e-6)
    np.testing.assert_allclose(picture[2], 1.0)  # nothing hit: white
