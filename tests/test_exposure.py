"""Per-photo exposure (--exposure.mode affine): each training view's colours through its own
affine map, averaging to the identity."""

import json
import shutil

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import short_run, tiny_config
from tensorf.data.blender import load_blender
from tensorf.data.generated import vary_exposure
from tensorf.eval import evaluate_views
from tensorf.pose_fit import exposed_render, fit_exposure
from tensorf.render import composite_all
from tensorf.run import restore_run
from tensorf.training.exposure import maps
from tensorf.training.loop import train


def test_exposure_maps_the_fields_colour_and_leaves_the_background():
    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.uniform(0, 0.2, (5, 8)), jnp.float32)
    rgb = jnp.asarray(rng.uniform(0, 1, (5, 8, 3)), jnp.float32)
    t = jnp.linspace(2, 6, 8)[None].repeat(5, 0)
    background = jnp.asarray(rng.uniform(0, 1, (5, 3)), jnp.float32)
    plain = composite_all(weights, rgb, t, background)
    # The identity map changes nothing, bit for bit (training starts there).
    identity = composite_all(weights, rgb, t, background, jnp.broadcast_to(jnp.eye(3, 4), (5, 3, 4)))
    np.testing.assert_array_equal(np.asarray(identity.rgb), np.asarray(plain.rgb))
    # Half the gain and an offset: the field's share of each pixel is mapped, the background's is not.
    a = jnp.broadcast_to(jnp.concatenate([0.5 * jnp.eye(3), jnp.full((3, 1), 0.1)], 1), (5, 3, 4))
    mapped = composite_all(weights, rgb, t, background, a)
    opacity = np.asarray(plain.opacity)[:, None]
    field = np.asarray(plain.rgb) - (1 - opacity) * np.asarray(background)
    expected = 0.5 * field + 0.1 * opacity + (1 - opacity) * np.asarray(background)
    np.testing.assert_allclose(np.asarray(mapped.rgb), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mapped.depth), np.asarray(plain.depth))


def test_maps_average_to_the_identity():
    raw = jax.random.normal(jax.random.key(0), (7, 3, 4))
    np.testing.assert_allclose(np.asarray(maps(raw).mean(axis=0)), np.eye(3, 4), atol=1e-6)
    # The same views' differences, whatever their common part (the field carries that).
    np.testing.assert_allclose(np.asarray(maps(raw + 0.3)), np.asarray(maps(raw)), atol=1e-6)
    # Gains only: the diagonal of the same maps, nothing else.
    np.testing.assert_allclose(np.asarray(maps(raw, "gain")), np.asarray(maps(raw)) * np.eye(3, 4), atol=1e-6)


def test_a_darker_photo_gets_the_smallest_gain_and_the_maps_resume_bit_exact(scene, tmp_path):
    # One of the 24 training photos a stop darker than the rest: after 100 steps its map's gain
    # is the smallest of all (0.88; the others 0.94-1.10, as they also take up what the young
    # field does not yet explain).
    darker = tmp_path / "scene"
    shutil.copytree(scene, darker)
    meta = json.loads((darker / "transforms_train.json").read_text())
    path = darker / (meta["frames"][5]["file_path"] + ".png")
    rgba = iio.imread(path)
    rgba[..., :3] //= 2
    iio.imwrite(path, rgba)
    cfg = tiny_config(darker, tmp_path / "run", steps=100, checkpoint_every=50, exposure__mode="affine",
                      exposure__lr=3e-3)
    straight = train(cfg)
    written = np.asarray(json.loads((tmp_path / "run" / "exposure.json").read_text())["maps"])
    assert written.shape == (24, 3, 4)
    np.testing.assert_allclose(written.mean(axis=0), np.eye(3, 4), atol=1e-5)
    gains = np.diagonal(written[..., :3], axis1=1, axis2=2).mean(axis=1)
    assert int(np.argmin(gains)) == 5 and gains[5] < np.median(gains) - 0.05
    # Resumed from the step-50 checkpoint, the run ends where the uninterrupted one did: the maps
    # and their Adam state are part of the checkpoint.
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "100")
    resumed = train(cfg, resume=True)
    assert resumed.train_psnr == straight.train_psnr
    assert json.loads((tmp_path / "run" / "exposure.json").read_text())["maps"] == written.tolist()


@pytest.mark.slow  # two 300-step trainings, ~2.5 min on 2 cores: on the slow CI line
def test_exposure_maps_undo_photos_of_different_exposures(scene, tmp_path):
    # Every training photo at its own exposure (within a stop either way) and white balance (10%),
    # the held-out views at the photos' average (benchmarks/exposure.py: 21.93 dB without maps,
    # 23.72 with, 23.96 on the photos as rendered).
    varied = tmp_path / "varied"
    shutil.copytree(scene, varied)
    applied = vary_exposure(varied, stops=1.0, tint=0.1)
    over = short_run(varied)
    plain = train(tiny_config(scene, tmp_path / "plain", **over))
    mapped = train(tiny_config(scene, tmp_path / "mapped", exposure__mode="affine", **over))
    assert mapped.eval_metrics["psnr"] > plain.eval_metrics["psnr"] + 1.0
    learned = np.asarray(json.loads((tmp_path / "mapped" / "exposure.json").read_text())["maps"])
    diagonal = lambda m: np.diagonal(m[..., :3], axis1=1, axis2=2).ravel()  # noqa: E731
    assert np.corrcoef(diagonal(learned), diagonal(applied))[0, 1] > 0.95


def test_least_squares_recovers_a_photos_gains():
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0.1, 0.6, (20, 30, 3)).astype(np.float32)
    opacity = rng.uniform(0.3, 1, (20, 30)).astype(np.float32)
    background = rng.uniform(0, 1, (20, 30, 3)).astype(np.float32)
    rgb = rgb * opacity[..., None] + (1 - opacity[..., None]) * background  # a render over its background
    truth_map = np.array([[0.8, 0, 0, 0], [0, 0.7, 0, 0], [0, 0, 1.2, 0]], np.float32)
    photo = exposed_render(rgb, opacity, background, truth_map)
    left = np.zeros((20, 30), bool)
    left[:, :15] = True
    np.testing.assert_allclose(fit_exposure(rgb, opacity, background, photo, left), truth_map, atol=1e-5)


def test_fitted_exposure_undoes_held_out_photos_exposures_judged_on_the_other_half(trained_run, tmp_path):
    # The fixture's test photos each at their own exposure (a stop either way) and white balance:
    # each view's map fitted on its left half brings the right half back to what the field scores
    # on the photos as rendered.
    cfg, _ = trained_run
    _, model, params, _ = restore_run(cfg.run_dir)
    varied = tmp_path / "scene"
    shutil.copytree(cfg.data.path, varied)
    vary_exposure(varied, stops=1.0, tint=0.1, seed=3, split="test")
    def judge(path, **fit) -> float:
        views = load_blender(path, "test").subset(range(3))
        return evaluate_views(model, params, views, tmp_path, "t", 4096, verbose=False, write=False, with_lpips=False,
                              right_half=True, **fit)["psnr"]

    as_rendered, off, fitted = judge(cfg.data.path), judge(varied), judge(varied, fitted_exposure=True)
    assert off < as_rendered - 3.0 and fitted > off + 3.0 and fitted > as_rendered - 0.5, (as_rendered, off, fitted)
