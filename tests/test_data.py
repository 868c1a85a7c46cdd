"""Blender loading: conventions, downscale, and one clear error line for each kind of bad input."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SHARED_DATA
from tensorf.data.blender import load_blender
from tensorf.data.cameras import Cameras
from tensorf.data.rays import RayPool
from tensorf.data.views import Views
from tensorf.errors import UserError
from tensorf.training.step import draw_batch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def copy(scene, tmp_path) -> Path:
    dst = tmp_path / "scene"
    shutil.copytree(scene, dst)
    return dst


def test_loads_generated_scene_with_white_background_and_downscale(scene):
    v = load_blender(scene, "train")
    assert v.images.shape == (24, 32, 32, 3) and v.images.dtype == np.float32
    assert np.isclose(v.images[0, 0, 0], 1.0).all()  # corners are background: white
    half = load_blender(scene, "train", downscale=2)
    assert half.images.shape == (24, 16, 16, 3)
    np.testing.assert_allclose(half.images[0], v.images[0].reshape(16, 2, 16, 2, 3).mean((1, 3)), atol=1e-6)
    assert np.allclose(half.cameras.fx, v.cameras.fx / 2) and np.allclose(half.cameras.cx, 8.0)


def test_camera_rays_look_down_minus_z():
    cams = Cameras.centered(np.eye(4)[None], 5, 5, 10.0)
    o, d, _ = cams.rays(0)
    np.testing.assert_allclose(d[2, 2], [0, 0, -1], atol=1e-6)  # centre pixel
    assert d[0, 2, 1] > 0 and d[2, 4, 0] > 0  # top row looks up, right column looks right
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-6)


def test_pixel_corner_rays_as_nerf_casts_them(scene):
    """--data.pixel-centers False (the nerf preset, as JaxNeRF's published runs): each ray goes
    through its pixel's top-left corner, so pixel (W/2, H/2)'s ray is the optical axis; with
    centres (the default) it is half a pixel off it."""
    from tensorf.config import DataConfig
    from tensorf.data.dataset import load_dataset, load_eval_views
    from tensorf.presets import PRESETS

    assert not PRESETS["nerf"][1].data.pixel_centers
    assert PRESETS["jaxnerf-plus"][1].data.pixel_centers and PRESETS["mipnerf"][1].data.pixel_centers
    for centers in (True, False):
        cfg = DataConfig(path=scene, pixel_centers=centers)
        for views in (load_dataset(cfg).train, load_eval_views(cfg)[0]):
            cams = views.cameras
            _, d, _ = cams.rays(0)
            axis = -cams.c2w[0, :3, 2]
            ray = d[cams.height[0] // 2, cams.width[0] // 2].astype(np.float64)
            angle = float(np.linalg.norm(np.cross(ray, axis)))  # sin of the angle: exact near 0
            half_pixel = np.hypot(0.5, 0.5) / cams.fx[0]
            np.testing.assert_allclose(angle, half_pixel if centers else 0.0, atol=2e-3 * half_pixel + 1e-6)


def test_camera_intrinsics_per_view():
    # fx != fy and an off-centre principal point: pixel (u, v) looks along ((u - cx) / fx, -(v - cy) / fy, -1).
    cams = Cameras(np.stack([np.eye(4), np.eye(4)]).astype(np.float32), np.array([10.0, 20.0]), np.array([5.0, 20.0]),
                   np.array([1.5, 3.0]), np.array([2.5, 2.0]), np.array([6, 6]), np.array([4, 4]))
    _, d, _ = cams.rays(0)
    assert d.shape == (4, 6, 3)
    expect = np.array([(0.5 - 1.5) / 10.0, -(0.5 - 2.5) / 5.0, -1.0])
    np.testing.assert_allclose(d[0, 0], expect / np.linalg.norm(expect), atol=1e-6)
    _, d1, _ = cams.rays(1)
    np.testing.assert_allclose(d1[1, 2], [-0.5 / 20, 0.5 / 20, -1] / np.linalg.norm([-0.5 / 20, 0.5 / 20, -1]), atol=1e-6)
    # Resizing scales every intrinsic; the JSON round trip keeps them.
    half = cams.resized(3, 2)
    np.testing.assert_allclose(half.fx, [5.0, 10.0])
    np.testing.assert_allclose(half.cy, [1.25, 1.0])
    back = Cameras.from_json(cams.to_json())
    for a, b in zip((back.fx, back.fy, back.cx, back.cy, back.width, back.height, back.c2w),
                    (cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height, cams.c2w)):
        np.testing.assert_array_equal(a, b)


def test_ray_batches_are_drawn_on_the_device_as_a_pure_function_of_seed_and_step(scene):
    pool = jax.device_put(RayPool.from_views(load_blender(scene, "train")))
    key = jax.random.key(0)
    _, a, ca, ka = draw_batch(pool, key, 7, 64)
    _, b, cb, kb = draw_batch(pool, key, 7, 64)
    _, c, _, _ = draw_batch(pool, key, 8, 64)
    np.testing.assert_array_equal(a.directions, b.directions)
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(jax.random.key_data(ka), jax.random.key_data(kb))
    assert not np.array_equal(a.directions, c.directions)


def test_view_rays_match_the_float64_formula_at_full_size():
    """Every pixel's ray against numpy in float64, at a size (200x200) where one way of writing
    the formula came out wrong under XLA CPU's jit."""
    rng = np.random.default_rng(0)
    angle = 0.7
    c2w = np.eye(4, dtype=np.float32)
    c2w[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    c2w[:3, 3] = rng.normal(size=3)
    cams = Cameras.centered(c2w[None], 200, 200, 220.0)
    o, d, _ = cams.rays(0)
    j, i = np.meshgrid(np.arange(200.0), np.arange(200.0), indexing="ij")
    ref = np.stack([(i + 0.5 - 100) / 220.0, -(j + 0.5 - 100) / 220.0, -np.ones_like(i)], -1) @ c2w[:3, :3].T.astype(np.float64)
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    np.testing.assert_allclose(d, ref, atol=1e-6)
    np.testing.assert_array_equal(o, np.broadcast_to(c2w[:3, 3], o.shape))
    # The same rays drawn through a pool on the device.
    views = Views(images=np.zeros((1, 200, 200, 3), np.float32), cameras=cams, names=("a",))
    rays, _ = jax.device_put(RayPool.from_views(views)).rays(jnp.arange(200 * 200, dtype=jnp.int32))
    np.testing.assert_allclose(np.asarray(rays.directions), ref.reshape(-1, 3), atol=1e-6)


def test_pool_rays_are_the_views_rays_and_colours_held_in_a_quarter_or_half_the_bytes(scene):
    """The pool's rays are the views' rays, and its colours the views' pixels: composited over the
    background (not 8-bit values) within 0.5 / 65535 from uint16, half of float32's bytes; the
    same images rounded to 8 bits, as opaque photos are read, from uint8 (a quarter), equal to
    float32's last bit (the step divides by 255 as XLA compiles it)."""
    views = load_blender(scene, "train")
    pixels = views.height * views.width
    eight_bit = dataclasses.replace(views, images=np.round(views.images * 255).astype(np.float32) / np.float32(255))
    for v, dtype, tol in ((views, np.uint16, 0.5 / 65535 + 1e-7), (eight_bit, np.uint8, 1e-7)):
        assert not np.array_equal(v.images, eight_bit.images) or dtype == np.uint8  # the two cases differ
        pool = jax.device_put(RayPool.from_views(v))
        assert pool.colors.dtype == dtype and pool.colors.nbytes == v.images.size * np.dtype(dtype).itemsize
        for i in (0, len(v.names) - 1):
            rays, colors = pool.rays(jnp.arange(i * pixels, (i + 1) * pixels, dtype=jnp.int32))
            o, d, _ = v.cameras.rays(i)
            np.testing.assert_allclose(np.asarray(rays.directions), d.reshape(-1, 3), atol=2e-7)
            np.testing.assert_array_equal(np.asarray(rays.origins), o.reshape(-1, 3))
            assert colors.dtype == jnp.float32
            np.testing.assert_allclose(np.asarray(colors), v.images[i].reshape(-1, 3), rtol=0, atol=tol)


def test_every_ray_in_play_is_drawn_and_no_other(scene):
    views = load_blender(scene, "train", views=(0, 1))
    small = Views(images=views.images[:, :6, :5], cameras=views.cameras.resized(5, 6), names=views.names)
    pool = jax.device_put(RayPool.from_views(small))  # 60 rays
    odd = lambda params, rays: jnp.arange(rays.origins.shape[0]) % 3 != 0  # noqa: E731
    kept = pool.filtered(odd, {}, chunk=8)  # per chunk of 8: ids 1, 2, 4, 5, 7 of each chunk
    expect = [i for i in range(60) if (i % 8) % 3 != 0]
    assert int(kept.count) == len(expect)
    np.testing.assert_array_equal(np.asarray(kept.ids[: len(expect)]), expect)
    drawn = set()
    for step in range(40):
        _, rays, colors, _ = draw_batch(kept, jax.random.key(0), step, 32)
        drawn |= {tuple(np.round(x, 5)) for x in np.asarray(rays.directions)}
    every, _ = kept.rays(kept.ids[: len(expect)])
    assert drawn == {tuple(np.round(x, 5)) for x in np.asarray(every.directions)}


def test_single_image_batches_come_from_one_view_and_only_rays_in_play(scene):
    views = load_blender(scene, "train")
    pool = jax.device_put(RayPool.from_views(views))
    # Keep the rays of the views whose camera sits at x > 0 (a filter like the box or mask one).
    right = lambda params, rays: rays.origins[:, 0] > 0  # noqa: E731
    kept = pool.filtered(right, {}, chunk=512)
    n_right = int(np.sum(views.cameras.c2w[:, 0, 3] > 0))
    assert 0 < n_right < len(views.names) and int(kept.count) == n_right * views.height * views.width
    origins = set()
    for step in range(16):
        _, rays, _, _ = draw_batch(kept, jax.random.key(0), step, 64, single_image=True)
        o = np.unique(np.asarray(rays.origins), axis=0)
        assert len(o) == 1 and o[0, 0] > 0  # one view per batch, and one in play
        origins.add(tuple(np.round(o[0], 5)))
    assert len(origins) > n_right // 2  # the view changes from step to step


def test_missing_dataset_dir(tmp_path):
    with pytest.raises(UserError, match=r"nope does not exist.*generated"):
        load_blender(tmp_path / "nope", "train")


def test_missing_split_lists_available(copy):
    with pytest.raises(UserError, match=r"transforms_bogus.json not found.*test, train, val"):
        load_blender(copy, "bogus")


def test_malformed_json(copy):
    (copy / "transforms_train.json").write_text("{not json")
    with pytest.raises(UserError, match=r"transforms_train.json: malformed"):
        load_blender(copy, "train")
    (copy / "transforms_train.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(UserError, match=r"transforms_train.json: malformed.*camera_angle_x"):
        load_blender(copy, "train")


def test_missing_image(copy):
    (copy / "train" / "r_3.png").unlink()
    with pytest.raises(UserError, match=r"r_3.png: image file is missing"):
        load_blender(copy, "train")


def test_image_size_mismatch(copy):
    iio.imwrite(copy / "train" / "r_5.png", np.zeros((16, 16, 4), np.uint8))
    with pytest.raises(UserError, match=r"r_5.png: image size 16x16 differs"):
        load_blender(copy, "train")


def test_downscale_must_divide(copy):
    with pytest.raises(UserError, match=r"not divisible by downscale 5; pick a factor that divides it \(2, 4, 8, 16, 32\)"):
        load_blender(copy, "train", downscale=5)


def test_cli_missing_dataset_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train_lego.py", "--data.path", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing" in lines[0], proc.stderr
    assert "--preset generated" in lines[0]


@pytest.mark.skipif(not (SHARED_DATA / "nerf_synthetic" / "lego").is_dir(), reason="../shared lego not present")
def test_real_lego_loads_at_downscale():
    v = load_blender(SHARED_DATA / "nerf_synthetic" / "lego", "val", downscale=8)
    assert v.images.shape == (100, 100, 100, 3)
    assert np.allclose(v.cameras.fx, 0.5 * 100 / np.tan(0.5 * 0.6911112070083618), rtol=1e-4)


def test_jpeg_photos_are_decoded_downscaled_close_to_the_block_mean(tmp_path):
    """JPEGs read at a downscale come from libjpeg's scaled decode (1/2, 1/4, 1/8; factor 16:
    1/8, then 2x2 blocks averaged): within 40 dB PSNR of the full decode's block mean, and at 2,
    4 and 8 as 8-bit values, which the ray pool keeps in a byte each."""
    from tensorf.data.images import read_rgb
    from tensorf.data.rays import packed_colors

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    smooth = np.stack([x / 128, y / 96, 0.5 + 0.4 * np.sin(x / 9.0) * np.cos(y / 7.0)], axis=-1)
    raw = np.clip(255 * smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
    iio.imwrite(tmp_path / "a.jpg", raw, quality=95)
    full = iio.imread(tmp_path / "a.jpg").astype(np.float64) / 255
    for f in (2, 4, 8, 16):
        img, _ = read_rgb(tmp_path / "a.jpg", f)
        want = full.reshape(96 // f, f, 128 // f, f, 3).mean(axis=(1, 3))
        assert img.shape == want.shape and img.dtype == np.float32
        psnr = -10 * np.log10(np.mean((img - want) ** 2))
        assert psnr > 40, (f, psnr)
        assert (packed_colors(img)[1] == 255) == (f <= 8), f
    # Not a JPEG: the exact block mean.
    iio.imwrite(tmp_path / "a.png", raw)
    img, _ = read_rgb(tmp_path / "a.png", 4)
    np.testing.assert_allclose(img, (raw / 255).reshape(24, 4, 32, 4, 3).mean(axis=(1, 3)), atol=1e-6)


# (PIL writes 16-bit PNGs in grey only.)
@pytest.mark.parametrize(("dtype", "channels"), [(np.uint8, 1), (np.uint8, 3), (np.uint8, 4), (np.uint16, 1)])
def test_downscale_is_the_mean_of_each_block_at_every_depth(tmp_path, dtype, channels):
    """Area averaging: opaque images are summed as integers (faster), images with alpha are
    composited first; either way each pixel is its block's mean of the [0, 1] values."""
    from tensorf.data.images import read_rgb

    top = np.iinfo(dtype).max
    raw = np.random.default_rng(channels).integers(0, top, (12, 8, channels), endpoint=True).astype(dtype)
    iio.imwrite(tmp_path / "a.png", raw[..., 0] if channels == 1 else raw)
    img, _ = read_rgb(tmp_path / "a.png", 4, background=1.0)
    full = raw.astype(np.float64) / top
    if channels == 4:
        full = full[..., :3] * full[..., 3:] + (1.0 - full[..., 3:])
    want = np.broadcast_to(full, (12, 8, 3)).reshape(3, 4, 2, 4, 3).mean(axis=(1, 3))
    assert img.dtype == np.float32 and img.shape == (3, 2, 3)
    np.testing.assert_allclose(img, want, atol=1e-6)
