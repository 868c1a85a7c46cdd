"""Depth supervision (--data.depth): a capture's depth maps, read as nerfstudio reads them, become
each ray's distance to its surface, and the DS-NeRF loss trained on them puts a few views'
surfaces where they are."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from tensorf.config import DataConfig, TensoRFConfig
from tensorf.data.dataset import load_dataset
from tensorf.data.generated import generate_depth_capture, generate_lens_capture, surface_distance
from tensorf.data.rays import RayPool
from tensorf.depth_loss import ds_nerf_loss
from tensorf.errors import UserError

SIZE = 32


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """A generated 360 capture of 10 views whose transforms.json names a depth map per frame
    (generate_depth_capture: 16-bit PNGs in millimetres, one at half size, one .npy)."""
    return generate_depth_capture(tmp_path_factory.mktemp("depth"), size=SIZE, n=10)


def test_each_ray_ends_on_the_surface_its_depth_map_measures(capture):
    data = load_dataset(DataConfig(path=capture, depth=True))
    assert data.train.depths is not None and "depth maps: 8 of 8 training views" in data.describe(capture)
    pool = RayPool.from_views(data.train)
    rays, _ = pool.rays(jnp.arange(pool.count))
    target = np.asarray(rays.target_depth)
    hit = target > 0
    assert 0.2 < hit.mean() < 0.9  # the scene and the white around it
    # Where each ray's measured distance puts it, taken back to the capture's world: on a surface,
    # to the millimetre rounding (the run's world is scaled by about 0.4).
    ends = np.asarray(rays.origins + rays.directions * rays.target_depth[:, None], np.float64)[hit]
    ends = ends @ data.to_source[:3, :3].T + data.to_source[:3, 3]
    view = np.asarray(pool.views_of(jnp.arange(pool.count)))[hit]
    small = view == list(data.train.names).index("frame002")  # the half-size map: nearest neighbour
    off = np.abs(surface_distance(ends))
    assert np.median(off[~small]) < 2e-3 and np.quantile(off[~small], 0.99) < 5e-3, np.quantile(off[~small], 0.99)
    assert np.median(off[small]) < 0.02
    # The held-out views' depth metric (tensorf.eval, AbsRel): 0 for a render whose distances are
    # the measured ones, 0.1 for one 10% too far.
    from tensorf.eval import depth_abs_rel

    _, d, _ = data.eval.cameras.rays(0)
    exact = data.eval.depths[0] / np.maximum(np.asarray(d) @ -data.eval.cameras.c2w[0, :3, 2], 1e-6)
    assert depth_abs_rel(data.eval, 0, exact) < 1e-5
    assert abs(depth_abs_rel(data.eval, 0, 1.1 * exact) - 0.1) < 1e-5
    # Taken as the ray's distance (no division by the angle to the viewing axis), the ends miss.
    flat = np.asarray(rays.origins + rays.directions * pool.depths[:, None].astype(jnp.float32), np.float64)[hit]
    assert np.median(np.abs(surface_distance(flat @ data.to_source[:3, :3].T + data.to_source[:3, 3]))) > 5e-3


def test_the_depth_loss_gathers_a_rays_weight_at_its_measured_depth():
    """The loss falls as a ray's weight moves from a wrong surface to the measured one, and a ray
    with no measure adds nothing."""
    t = jnp.linspace(0.5, 3.0, 26)[None].repeat(2, 0)
    at = lambda d: jnp.exp(-((t - d) ** 2) / 0.02) / jnp.exp(-((t - d) ** 2) / 0.02).sum(-1, keepdims=True)  # noqa: E731
    measured = jnp.array([2.0, 0.0])
    losses = [float(ds_nerf_loss(0.9 * at(d), t, 0.1, measured, 0.1)) for d in (1.0, 1.5, 1.9, 2.0)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * losses[0]
    grad = jax.grad(lambda w: ds_nerf_loss(w, t, 0.1, jnp.array([0.0, 0.0]), 0.1))(0.9 * at(1.0))
    assert not np.asarray(grad).any()


@pytest.mark.slow  # 80 s on 2 cores: two 600-step runs
def test_training_with_depth_maps_gains_on_held_out_views(capture, tmp_path):
    """Five views around the scene, 600 steps, the defaults' depth loss: held-out views gain over
    1 dB, and the surfaces their expected depth lands on come nearer the truth (measured: 20.20 ->
    21.78 dB, 90% of pixels within 0.172 -> 0.107 of a surface; depth_sigma 0.1 instead: 0.298)."""
    from tensorf.data.rays import view_rays
    from tensorf.eval import render_view
    from tensorf.render import render_rays_chunked
    from tensorf.run import restore_run
    from tensorf.training.loop import train

    psnr, off = {}, {}
    for depth in (False, True):
        base = tiny_config(capture, tmp_path / f"depth_{depth}", steps=600, checkpoint_every=0)
        cfg = dataclasses.replace(base, data=DataConfig(path=capture, depth=depth, hold_every=2),
                                  model=dataclasses.replace(base.model, n_voxels_final=48**3, upsample_steps=(50,)))
        train(cfg)
        cfg, model, params, _ = restore_run(cfg.run_dir)
        data = load_dataset(cfg.data)
        views, errors, gaps = data.eval, [], []
        for i in range(len(views.names)):
            rgb, _, _ = render_view(model, params, views, i, 1024)
            errors.append(np.mean((np.asarray(rgb) - views.images[i]) ** 2))
            out = render_rays_chunked(model, params, view_rays(views, i), 1024)
            o, d, _ = views.cameras.rays(i)
            opacity = np.asarray(out.opacity)
            ends = np.asarray(o, np.float64).reshape(-1, 3) + np.asarray(d, np.float64).reshape(-1, 3) * (
                np.asarray(out.depth) / np.maximum(opacity, 1e-6))[:, None]
            ends = ends @ data.to_source[:3, :3].T + data.to_source[:3, 3]
            gaps.append(np.abs(surface_distance(ends))[opacity > 0.5])
        psnr[depth] = float(np.mean(-10 * np.log10(errors)))
        off[depth] = float(np.quantile(np.concatenate(gaps), 0.9))
    assert psnr[True] > psnr[False] + 1.0, psnr
    assert off[True] < 0.75 * off[False], off


def test_depth_needs_a_capture_with_depth_maps_and_a_tensorf_model(capture, tmp_path):
    plain = generate_lens_capture(tmp_path / "plain", size=SIZE, n=4)
    with pytest.raises(UserError, match=r"--data.depth asks for depth maps and no frame has one"):
        load_dataset(DataConfig(path=plain, depth=True))
    from tensorf.config import NeRFConfig, TrainConfig
    from tensorf.training.loop import train

    with pytest.raises(UserError, match=r"--data.depth trains TensoRF models only"):
        train(TrainConfig(run_dir=tmp_path / "run", data=DataConfig(path=capture, depth=True), model=NeRFConfig()))
    assert isinstance(tiny_config(capture, tmp_path).model, TensoRFConfig)
