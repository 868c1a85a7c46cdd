"""VM factors: resampling and gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.config import TensoRFConfig
from tensorf.data.rays import Rays
from tensorf.fields import vm

from conftest import make_model


def _field(factors, x):
    return sum(jnp.sum(f, -1) for f in vm.vm_features(factors, x))


def test_upsample_preserves_field_align_corners():
    f = vm.init_vm(jax.random.key(0), (9, 7, 5), (3, 3, 3), 1.0)
    x = jax.random.uniform(jax.random.key(1), (500, 3))
    # R -> 2R - 1 keeps every old grid point, and the field is piecewise linear per axis,
    # so its values agree everywhere, not only at the shared points.
    g = vm.resize_vm(f, (17, 13, 9))
    assert g.resolution == (17, 13, 9)
    np.testing.assert_allclose(_field(g, x), _field(f, x), atol=1e-5)
    # Any new size keeps the box corners and faces' shared points (align-corners).
    h = vm.resize_vm(f, (23, 11, 30))
    corners = jnp.asarray([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], jnp.float32)
    np.testing.assert_allclose(_field(h, corners), _field(f, corners), atol=1e-5)


def test_factor_init_gives_each_array_its_shape_scale_and_own_values():
    from tensorf.fields import cp

    f = vm.init_vm(jax.random.key(0), (40, 30, 20), (6, 5, 4), 0.1)
    assert [p.shape for p in f.planes] == [(40, 30, 6), (40, 20, 5), (30, 20, 4)]
    assert [v.shape for v in f.lines] == [(20, 6), (30, 5), (40, 4)]
    flat = np.concatenate([np.ravel(a) for a in (*f.planes, *f.lines)])
    assert abs(flat.std() - 0.1) < 0.005 and abs(flat.mean()) < 0.005
    # Slices of one draw: no array repeats another's values, and another key draws afresh.
    heads = [np.ravel(a)[:4] for a in (*f.planes, *f.lines)]
    assert len({tuple(h) for h in heads}) == 6
    assert not np.allclose(vm.init_vm(jax.random.key(1), (40, 30, 20), (6, 5, 4), 0.1).planes[0], f.planes[0])
    c = cp.init_cp(jax.random.key(0), (40, 30, 20), 8, 0.2)
    assert [v.shape for v in c.lines] == [(40, 8), (30, 8), (20, 8)]
    assert abs(np.concatenate([np.ravel(v) for v in c.lines]).std() - 0.2) < 0.02


def test_voxels_to_resolution_follows_box_shape():
    assert vm.voxels_to_resolution(128**3, np.array([[-1.5] * 3, [1.5] * 3])) == (128, 128, 128)
    assert vm.voxels_to_resolution(8 * 16 * 32, np.array([[0, 0, 0], [1, 2, 4]])) == (8, 16, 32)


def _model():
    cfg = TensoRFConfig(
        n_voxels_init=8**3,
        density_components=(2, 2, 2),
        appearance_components=(3, 3, 3),
        appearance_features=6,
        mlp_hidden=16,
        init_scale=0.5,
        density_shift=0.0,
        max_samples=24,
        appearance_samples=24,
    )
    return make_model(cfg, aabb=((-1.0, -1, -1), (1, 1, 1)))


def test_colour_gradient_matches_finite_differences():
    model = _model()
    params = model.init(jax.random.key(0))
    rays = Rays(
        origins=jnp.asarray([[0.1, 0.2, 4.0], [3.0, 0.3, 0.2]]),
        directions=jnp.asarray([[0.0, 0.0, -1.0], [-1.0, 0.05, 0.0]]) / jnp.asarray([[1.0], [1.00125]]),
    )

    def colour(grids):
        p = {**params, "density": grids[0], "appearance": grids[1]}
        return jnp.sum(model.render(p, rays, None).rgb * jnp.asarray([0.3, 0.5, 0.7]))

    grids = (params["density"], params["appearance"])
    grad = jax.grad(colour)(grids)
    direction = jax.tree.map(lambda g: jax.random.normal(jax.random.key(2), g.shape), grids)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
    eps = 1e-3
    plus = colour(jax.tree.map(lambda p, d: p + eps * d, grids, direction))
    minus = colour(jax.tree.map(lambda p, d: p - eps * d, grids, direction))
    numeric = (plus - minus) / (2 * eps)
    assert abs(float(analytic)) > 1e-3  # the test would be vacuous with a zero gradient
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=2e-2)


def test_regulariser_is_l1_of_density_factors():
    model = _model()
    params = model.init(jax.random.key(0))
    d = params["density"]
    expected = sum(float(np.mean(np.abs(np.asarray(a)))) for a in (*d.planes, *d.lines)) * 0.5
    weights = {"l1": 0.5, "tv_density": 0.0, "tv_appearance": 0.0, "ortho": 0.0}
    np.testing.assert_allclose(float(model.regularizer(params, weights)), expected, rtol=1e-6)


def test_bfloat16_compute_renders_close_to_float32():
    model = _model()
    params = model.init(jax.random.key(0))
    low = dataclasses.replace(model, config=dataclasses.replace(model.config, compute_dtype="bfloat16"))
    rays = Rays(origins=jnp.asarray([[0.1, 0.2, 4.0]]), directions=jnp.asarray([[0.0, 0.0, -1.0]]))
    a, b = model.render(params, rays, None), low.render(params, rays, None)
    assert b.rgb.dtype == jnp.float32
    np.testing.assert_allclose(a.rgb, b.rgb, atol=3e-2)


def test_volume_lookup_equals_factor_lookup_with_gradients():
    """The summed-volume path (fast for many samples) is the same field as the factor path: equal
    densities and equal gradients with respect to every factor, for VM and CP."""
    x = jax.random.uniform(jax.random.key(1), (400, 3), minval=-1.0, maxval=1.0)
    x = x.at[:4].set(jnp.asarray([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1.0, -1.0, 0.3], [0.0, 1.0, -1.0]]))
    for field in ("vm", "cp"):
        cfg = TensoRFConfig(n_voxels_init=11 * 9 * 7, field=field,
                            density_components=(3, 2, 4), cp_density_components=5, init_scale=0.5, density_shift=0.0)
        params = make_model(cfg, aabb=((-1.0,) * 3, (1.0,) * 3)).init(jax.random.key(0))
        outs = []
        for lookup in ("factors", "volume"):
            model = make_model(dataclasses.replace(cfg, density_lookup=lookup), aabb=((-1.0,) * 3, (1.0,) * 3))
            sigma, grad = jax.value_and_grad(lambda p: jnp.sum(model._field_density(p, x) ** 2))(params)
            outs.append((model._field_density(params, x), grad["density"]))
        (d_f, g_f), (d_v, g_v) = outs
        np.testing.assert_allclose(d_v, d_f, rtol=1e-5, atol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_v, g_f)
        assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_f)) > 1e-3  # not vacuous


def test_colour_is_clamped_for_unbounded_shading():
    # SH shading is relu(x + 0.5): unbounded above. The rendered colour is clamped to [0, 1]
    # (official renderer), in training renders as in eval.
    model = _model()
    sh = dataclasses.replace(model, config=dataclasses.replace(model.config, shading="sh", appearance_features=27))
    params = sh.init(jax.random.key(0))
    params = {**params, "basis": params["basis"] * 200.0}
    rays = Rays(origins=jnp.asarray([[0.1, 0.2, 4.0], [0.0, 0.0, 4.0]]), directions=jnp.asarray([[0.0, 0.0, -1.0]] * 2))
    raw = sh.color(params, jnp.zeros((1, 3)), jnp.asarray([[0.0, 0.0, -1.0]]))
    assert float(raw.max()) > 1.5  # the head itself goes far above 1
    for key in (None, jax.random.split(jax.random.key(1), 2)):
        out = sh.render(params, rays, key)
        assert float(out.rgb.max()) == 1.0 and float(out.rgb.min()) >= 0.0  # saturated, not above
