"""Proposal sampling's pieces (tensorf/intervals.py): the spacing, resampling from a histogram,
and mip-NeRF 360's interlevel and distortion losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tensorf.intervals import (
    Spacing,
    distortion_loss,
    interlevel_loss,
    outer_measure,
    propose,
    resample_intervals,
    schlick_bias,
)


def _random_histogram(key, b, n):
    k1, k2 = jax.random.split(key)
    edges = jnp.sort(jax.random.uniform(k1, (b, n + 1)), axis=-1)
    edges = edges.at[:, 0].set(0.0).at[:, -1].set(1.0)
    weights = jax.nn.softmax(3 * jax.random.normal(k2, (b, n)), axis=-1) * 0.9
    return edges, weights


def test_unbounded_spacing_is_linear_to_the_exit_then_even_in_disparity():
    sp = Spacing.disparity_beyond(0.1, 1000.0, jnp.asarray([2.0, 5.0]))
    s = jnp.broadcast_to(jnp.linspace(0, 1, 11), (2, 11))
    t = np.asarray(sp.t(s))
    np.testing.assert_allclose(t[:, 0], 0.1, rtol=1e-6)
    np.testing.assert_allclose(t[:, 5], [2.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(t[:, -1], 1000.0, rtol=1e-4)
    assert np.all(np.diff(t, axis=-1) > 0)
    np.testing.assert_allclose(np.diff(t[:, :6]), np.diff(t[:, :2]).repeat(5, -1), rtol=1e-5)
    np.testing.assert_allclose(np.diff(1 / t[:, 5:]), np.diff(1 / t[:, 5:7]).repeat(5, -1), rtol=1e-4)


def test_interlevel_loss_is_zero_when_the_proposal_bounds_the_weights_and_reaches_only_the_proposal():
    edges, w = _random_histogram(jax.random.key(0), 64, 24)
    # A proposal histogram on the same bins with at least the same weight bounds it.
    assert float(interlevel_loss(edges, w, [(edges, w)])) < 1e-10  # up to rounding in the running sums
    coarse = edges[:, ::4]  # coarser bins holding each group's total: still a bound
    coarse_w = w.reshape(64, 6, 4).sum(-1)
    np.testing.assert_allclose(outer_measure(edges, coarse, coarse_w).sum(-1) >= w.sum(-1), True)
    assert float(interlevel_loss(edges, w, [(coarse, coarse_w)])) < 1e-10
    # Weight moved away from where the final weights are: positive.
    shifted = jnp.roll(coarse_w, 3, axis=-1)
    assert float(interlevel_loss(edges, w, [(coarse, shifted)])) > 1e-3
    # Its gradient reaches the proposal's weights, not the final weights.
    g_final, g_prop = jax.grad(lambda a, b: interlevel_loss(edges, a, [(coarse, b)]), argnums=(0, 1))(w, shifted)
    assert float(jnp.abs(g_final).max()) == 0.0 and float(jnp.abs(g_prop).max()) > 0.0


def _distortion_quadratic(edges, w):
    """mip-NeRF 360 eq. 15 as the double sum over pairs (multinerf's lossfun_distortion)."""
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    pairs = jnp.sum(w[:, :, None] * w[:, None, :] * jnp.abs(mids[:, :, None] - mids[:, None, :]), axis=(1, 2))
    return pairs + jnp.sum(w**2 * jnp.diff(edges, axis=-1), -1) / 3


def test_distortion_loss_linear_form_equals_the_pairwise_definition_and_prefers_compact_weights():
    edges, w = _random_histogram(jax.random.key(1), 32, 40)
    np.testing.assert_allclose(distortion_loss(edges, w), _distortion_quadratic(edges, w), rtol=1e-4, atol=1e-7)
    s = jnp.broadcast_to(jnp.linspace(0, 1, 41), (1, 41))
    mids = 0.5 * (s[:, 1:] + s[:, :-1])
    compact = jax.nn.softmax(-((mids - 0.5) / 0.02) ** 2, axis=-1)
    spread = jax.nn.softmax(-((mids - 0.5) / 0.3) ** 2, axis=-1)
    assert float(distortion_loss(s, compact)[0]) < 0.3 * float(distortion_loss(s, spread)[0])


def _target_cdf(x):
    """A histogram on [0, 1]: 70% of the mass evenly in [0.2, 0.3], 30% in [0.6, 0.9]."""
    return 0.7 * np.clip((x - 0.2) / 0.1, 0, 1) + 0.3 * np.clip((x - 0.6) / 0.3, 0, 1)


@pytest.mark.parametrize("levels", [(), (64,), (64, 32)])
def test_resampling_follows_the_histogram_at_each_level(levels):
    """Every level sees the target's mass over its own bins; the bins drawn from the last one
    must follow the target (a KS distance over many rays' bin centres)."""
    b = 400

    def weights_of(i, edges):
        return jnp.asarray(np.diff(_target_cdf(np.asarray(edges)), axis=-1), jnp.float32)

    jitter = jax.random.uniform(jax.random.key(2), (b, len(levels) + 1))
    if not levels:  # one level, from a histogram given directly
        e0 = jnp.broadcast_to(jnp.linspace(0, 1, 101), (b, 101))
        edges = resample_intervals(e0, weights_of(0, e0), 32, jitter[:, 0])
    else:
        edges, history = propose(levels, 32, weights_of, jitter)
        assert [h[0].shape[-1] for h in history] == [n + 1 for n in levels]
    edges = np.asarray(edges)
    assert edges.shape == (b, 33) and np.all(np.diff(edges, axis=-1) >= 0)
    centres = np.sort((0.5 * (edges[:, 1:] + edges[:, :-1])).ravel())
    empirical = np.arange(1, centres.size + 1) / centres.size
    assert np.max(np.abs(empirical - _target_cdf(centres))) < 0.05


def test_annealing_flattens_the_resampling_early_on():
    assert float(schlick_bias(jnp.float32(0.0), 10.0)) == 0.0 and float(schlick_bias(jnp.float32(1.0), 10.0)) == 1.0
    edges = jnp.broadcast_to(jnp.linspace(0, 1, 5), (1, 5))
    peaked = jnp.asarray([[0.97, 0.01, 0.01, 0.01]])
    sharp = np.asarray(resample_intervals(edges, peaked, 16, None, 1.0))
    flat = np.asarray(resample_intervals(edges, peaked, 16, None, 0.0))
    assert (sharp[0, 1:-1] < 0.25).sum() > 12  # follows the peak
    np.testing.assert_allclose(flat[0], np.linspace(0, 1, 17), atol=1e-5)  # every bin alike


@pytest.mark.parametrize("padding, beyond", [(0.0, (0.0, 0.001)), (0.01, (0.03, 0.1))])
def test_padding_keeps_samples_beyond_a_proposal_that_turned_opaque_early(padding, beyond):
    """A proposal opaque in the first tenth of every ray (all its weight there) leaves the model no
    sample beyond it, so neither it nor the interlevel loss can learn what lies further; padded
    bins (nerfacto's 0.01 per bin) keep a share of the samples spread over the rest of the ray: 5%
    of the model's beyond the middle here, the padding of both levels compounding."""
    b = 64

    def weights_of(i, edges):
        mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
        w = jnp.where(mid < 0.1, 1.0, 0.0)
        return w / jnp.sum(w, axis=-1, keepdims=True)

    jitter = jax.random.uniform(jax.random.key(3), (b, 3))
    edges, _ = propose((64, 32), 32, weights_of, jitter, padding=padding)
    mid = np.asarray(0.5 * (edges[:, 1:] + edges[:, :-1]))
    share = float(np.mean(mid > 0.5))
    assert beyond[0] <= share <= beyond[1], share
