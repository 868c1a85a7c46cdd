"""The NeRF family beside TensoRF: encoding, hierarchical sampling, and a tiny NeRF / JaxNeRF+
through training, checkpoints, eval, the orbit renderer and mesh export."""

import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from tensorf.config import NeRFConfig
from tensorf.fields.nerf_mlp import encode
from tensorf.presets import JAXNERF_PLUS, NERF
from tensorf.render import pdf_samples, stratified_samples

ROOT = Path(__file__).resolve().parents[1]


def test_positional_encoding_matches_the_closed_form():
    x = jnp.asarray([[0.3, -1.2, 2.5], [0.0, 0.7, -0.1]], jnp.float32)
    n = 4
    out = np.asarray(encode(x, n))
    assert out.shape == (2, 3 * (1 + 2 * n))
    np.testing.assert_array_equal(out[:, :3], x)
    for d in range(3):
        for k in range(n):
            np.testing.assert_allclose(out[:, 3 + d * n + k], np.sin(2.0**k * np.asarray(x[:, d])), atol=1e-6)
            np.testing.assert_allclose(out[:, 3 + 3 * n + d * n + k], np.cos(2.0**k * np.asarray(x[:, d])), atol=1e-6)


def test_hierarchical_samples_follow_the_pdf_sorted_inside_and_without_gradient():
    bins = jnp.broadcast_to(jnp.linspace(2.0, 6.0, 11), (1, 11))
    w = jnp.asarray([[0, 0, 1, 3, 0, 0, 2, 0, 0, 0.5]], jnp.float32)
    n = 4000
    t = np.asarray(pdf_samples(bins, w, n, jax.random.uniform(jax.random.key(0), (1, n))))[0]
    assert np.all(np.diff(t) >= 0) and t.min() >= 2.0 and t.max() <= 6.0
    # Kolmogorov-Smirnov distance to the piecewise-linear CDF of the weights.
    pdf = np.asarray(w[0]) + 1e-5
    cdf = np.concatenate([[0], np.cumsum(pdf / pdf.sum())])
    expected = np.interp(t, np.asarray(bins[0]), cdf)
    ks = np.max(np.abs(expected - (np.arange(1, n + 1) - 0.5) / n))
    assert ks < 1.63 / np.sqrt(n), ks  # the 1% critical value
    # Empty intervals get (almost) nothing.
    assert np.mean((t > 2.0) & (t < 2.8)) < 1e-3
    # Deterministic quantiles, same properties.
    q = np.asarray(pdf_samples(bins, w, 64, None))[0]
    assert np.all(np.diff(q) >= 0) and q.min() >= 2.0 and q.max() <= 6.0
    # The fine positions carry no gradient back into the coarse weights.
    grad = jax.grad(lambda w: jnp.sum(pdf_samples(bins, w, 16, None)))(w)
    np.testing.assert_array_equal(grad, 0.0)
    s = np.asarray(stratified_samples(2.0, 6.0, 8, jax.random.uniform(jax.random.key(1), (3, 8)), 3))
    assert np.all(np.diff(s, axis=-1) >= 0) and s.min() >= 2.0 and s.max() <= 6.0


def _tiny(preset, **model):
    """A preset's recipe at toy size for a 2-core CPU."""
    return dataclasses.replace(preset.model, net_depth=3, net_width=48, skip_layer=2, net_width_condition=24,
                               position_freqs=6, direction_freqs=2, **model)


# NeRF in the README's command; JaxNeRF+ runs the same code paths with its own preset's options
# (the slow CI line).
@pytest.mark.parametrize("name, preset, samples, tools", [
    ("nerf", NERF, (24, 24), True),
    pytest.param("jaxnerf_plus", JAXNERF_PLUS, (24, 32), False, marks=pytest.mark.slow)])
def test_nerf_family_trains_restores_and_renders(scene, tmp_path, name, preset, samples, tools):
    from tensorf.run import restore_run
    from tensorf.training.loop import train

    cfg = tiny_config(scene, tmp_path / name, steps=100, batch_size=512, log_every=50, checkpoint_every=50,
                      final_eval=True, batching=preset.batching,
                      optim=dataclasses.replace(preset.optim, lr_mlp=1e-2, lr_delay_steps=50))
    cfg = dataclasses.replace(cfg, model=_tiny(preset, coarse_samples=samples[0], fine_samples=samples[1]),
                              data=dataclasses.replace(cfg.data, pixel_centers=preset.data.pixel_centers))
    result = train(cfg)
    # A blank white guess scores 8.7; measured at 100 steps: NeRF 15.3, JaxNeRF+ 14.6.
    assert result.eval_metrics["psnr"] > 13.5, result.eval_metrics
    _, model, params, _ = restore_run(cfg.run_dir)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(result.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert isinstance(model.config, NeRFConfig)
    if not tools:  # the same code paths as NeRF's below
        return

    from render_360 import Render360Args, render_orbit

    out = render_orbit(Render360Args(run_dir=cfg.run_dir, output=tmp_path / "orbit.gif", frames=3, resolution=(16, 12),
                                     progress=False))
    assert Path(out["rgb"]).is_file()
    pytest.importorskip("skimage")
    from tensorf.export_mesh import ExportMeshArgs, main

    mesh = main(ExportMeshArgs(run_dir=cfg.run_dir, output=tmp_path / "mesh.ply", resolution=24))
    assert Path(mesh).stat().st_size > 1000
    from tensorf.eval import EvalArgs
    from tensorf.eval import main as evaluate

    again = evaluate(EvalArgs(run_dir=cfg.run_dir, split="test", views=(0,)))["psnr"]  # the run's own figure
    np.testing.assert_allclose(again, result.eval_metrics["views"][0]["psnr"], atol=0.01)


def test_nerf_preset_cli_help_lists_its_options(capsys):
    sys.path.insert(0, str(ROOT))
    from train_lego import parse

    from tensorf.errors import UserError

    for preset in ("nerf", "jaxnerf-plus"):
        with pytest.raises(SystemExit) as exit_:
            parse(["--preset", preset, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "--model.coarse-samples" in out and "--model.fine-samples" in out
    cfg, _, _ = parse(["--preset", "generated", "model:nerf", "--model.coarse-samples", "8"])
    assert isinstance(cfg.model, NeRFConfig) and cfg.model.coarse_samples == 8 and cfg.steps == 1500
    with pytest.raises(UserError, match="unknown model family"):
        parse(["model:mlp"])


@pytest.mark.parametrize("family", ["nerf", "mipnerf"])
def test_near_camera_gradient_scaling_damps_near_samples_and_changes_no_render(family):
    """The NeRF family takes TensoRF's near-camera gradient scaling (Floaters No More): the same
    render, a smaller gradient from samples within the distance of the camera; and its auto
    choice follows the scene (on in a bounded capture, off where the near plane lies beyond it)."""
    from conftest import make_model
    from tensorf.config import MipNeRFConfig
    from tensorf.data.rays import Rays
    from tensorf.presets import MIPNERF

    if family == "nerf":
        base = _tiny(NERF, coarse_samples=16, fine_samples=16)
    else:
        base = dataclasses.replace(MIPNERF.model, net_depth=3, net_width=48, skip_layer=2, net_width_condition=24,
                                   max_deg_point=8, deg_view=2, samples=16)
    capture = dict(aabb=((-1.0,) * 3, (1.0,) * 3), near_far=(0.05, 3.0))
    assert make_model(base, **capture).config.near_gradient_distance == 1.0  # auto, in a capture
    assert make_model(base).config.near_gradient_distance == 0.0  # auto, Blender's near plane at 2
    plain = make_model(dataclasses.replace(base, near_gradient_distance=0.0), **capture)
    scaled = make_model(dataclasses.replace(base, near_gradient_distance=1.0), **capture)
    params = plain.init(jax.random.key(0))
    n = 8
    directions = jax.random.normal(jax.random.key(1), (n, 3))
    directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
    rays = Rays(origins=jnp.zeros((n, 3)) + jnp.asarray([0.0, 0.0, -1.5]), directions=directions,
                radii=jnp.full((n,), 0.01) if isinstance(base, MipNeRFConfig) else None)
    colors, keys = jnp.full((n, 3), 0.3), jax.random.split(jax.random.key(2), n)

    def loss_and_size(model):
        loss = lambda p: model.training_loss(p, rays, colors, keys, {})[0]  # noqa: E731
        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        return value, sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads))

    (loss, size), (plain_loss, plain_size) = loss_and_size(scaled), loss_and_size(plain)
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-6)  # the same render
    assert 0.0 < size < 0.9 * plain_size, (size, plain_size)
