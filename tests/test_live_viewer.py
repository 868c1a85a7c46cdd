"""The live viewer (python -m tensorf.viewer, train_lego.py --viewer): camera conventions, the
server side without a browser, and a real headless Chromium showing a trained run."""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path

import imageio.v3 as iio
import jax
import numpy as np
import pytest

from conftest import tiny_config
from tensorf.config import NeRFConfig, TensoRFConfig
from tensorf.data.cameras import Cameras, Ndc, ndc_to_world, ndc_world_directions
from tensorf.data.rays import Rays
from tensorf.data.views import Scene
from tensorf.models.base import build_model
from tensorf.render import render_rays_chunked
from tensorf.viewer.cameras import c2w_from_viser, image_size, vertical_fov, view_camera, viser_pose
from tensorf.viewer.headless import find_chromium, launch
from tensorf.viewer.renderer import Snapshot, render_view

TINY = TensoRFConfig(n_voxels_init=16**3, n_voxels_final=16**3, density_components=(2, 2, 2),
                     appearance_components=(4, 4, 4), appearance_features=8, mlp_hidden=16, max_samples=32,
                     appearance_samples=8, upsample_steps=(), mask_update_steps=())


def _look_at(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    back = np.subtract(position, target) / np.linalg.norm(np.subtract(position, target))
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4, dtype=np.float32)
    c2w[:3, :3] = np.stack([right, np.cross(back, right), back], axis=1)
    c2w[:3, 3] = position
    return c2w


def _cameras(ndc_near=None) -> Cameras:
    """Three cameras around the origin; forward-facing ones (looking down -z) for NDC, in the
    NDC that their 40x30 images of focal 45 fill."""
    if ndc_near is not None:
        poses = np.stack([_look_at((0.2 * i, -0.1 * i, 0.0), (0, 0, -5.0), up=(0, 1, 0)) for i in range(3)])
    else:
        poses = np.stack([_look_at((4 * math.cos(a), 4 * math.sin(a), 1.5), (0, 0, 0.2)) for a in (0.3, 2.0, 4.1)])
    return Cameras.centered(poses, 40, 30, focal=45.0, ndc=None if ndc_near is None else Ndc(ndc_near, 45 / 20, 45 / 15))


@pytest.mark.parametrize("ndc_near", [None, 1.0])
def test_a_training_camera_through_viser_casts_the_same_rays(ndc_near):
    cams = _cameras(ndc_near)
    for i in range(len(cams)):
        wxyz, position = viser_pose(cams.c2w[i])
        np.testing.assert_allclose(c2w_from_viser(wxyz, position), cams.c2w[i], atol=1e-6)
        view = view_camera(wxyz, position, vertical_fov(cams, i), 40, 30, cams.ndc)
        for got, want in zip(view.rays(0), cams.rays(i)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # OpenCV axes in viser: the camera looks along its +z, with +y down the image.
    rot = np.asarray(__import__("viser").transforms.SO3(viser_pose(cams.c2w[0])[0]).as_matrix())
    np.testing.assert_allclose(rot[:, 2], -cams.c2w[0, :3, 2], atol=1e-6)
    np.testing.assert_allclose(rot[:, 1], -cams.c2w[0, :3, 1], atol=1e-6)


def test_a_browser_camera_of_another_field_of_view_and_shape_sees_the_same_forward_facing_world():
    """A forward-facing run's field lives in its capture's NDC. A browser window of another shape,
    zoomed to another field of view, must cast its pixels' world rays into that same NDC, or the
    scene it shows is stretched with the window and unmoved by the zoom."""
    cams = _cameras(1.0)
    wxyz, position = viser_pose(cams.c2w[1])
    for fov_deg, width, height in ((20.0, 64, 24), (70.0, 30, 40)):
        view = view_camera(wxyz, position, math.radians(fov_deg), width, height, cams.ndc)
        world = view_camera(wxyz, position, math.radians(fov_deg), width, height)
        o_ndc, d_ndc, _ = view.rays(0)
        o, d, _ = world.rays(0)
        np.testing.assert_allclose(ndc_world_directions(o_ndc, d_ndc, cams.ndc.scale), d, atol=1e-5)
        # The same NDC point is the same world point whichever camera's ray reaches it.
        p = ndc_to_world(o_ndc + 0.5 * d_ndc, cams.ndc.sx, cams.ndc.sy, cams.ndc.near)
        along = np.sum((p - o) * d, axis=-1, keepdims=True)
        np.testing.assert_allclose(p, o + along * d, atol=1e-4)


def test_image_size_keeps_the_aspect_and_the_longer_side():
    assert image_size(16 / 9, 320) == (320, 180)
    assert image_size(0.5, 200) == (100, 200)
    assert image_size(1.0, 64) == (64, 64)


BLENDER = Scene(aabb=((-1.0, -1.0, -0.7), (1.0, 1.0, 1.0)), near_far=(2.0, 6.0), background=1.0)
SCENES = {
    "blender": (TINY, BLENDER),
    "ndc": (TINY, Scene(aabb=((-1.5, -1.67, -1.0), (1.5, 1.67, 1.0)), near_far=(0.0, 1.0), background=0.0, ndc=True)),
    "contracted": (TINY, Scene(aabb=((-2.0,) * 3, (2.0,) * 3), near_far=(0.05, 1000.0), background=0.0,
                               contraction="linf")),
    "nerf": (NeRFConfig(net_depth=2, net_width=16, skip_layer=4, net_width_condition=8, coarse_samples=8,
                        fine_samples=8), BLENDER),
}


@pytest.mark.parametrize("kind", sorted(SCENES))
def test_a_browser_camera_renders_an_image_of_its_size_as_the_run_renders_it(kind):
    config, scene = SCENES[kind]
    model = build_model(config, scene)
    params = model.init(jax.random.key(0), model.initial_state())
    if "density" in params:
        # A fresh TensoRF field is empty: noise in its density factors gives the view something to show.
        noisy = [x + 3.0 * jax.random.normal(jax.random.key(i), x.shape)
                 for i, x in enumerate(jax.tree.leaves(params["density"]))]
        params = {**params, "density": jax.tree.unflatten(jax.tree.structure(params["density"]), noisy)}
    snap = Snapshot.take(model, params, 7)
    cams = _cameras(1.0 if scene.ndc else None)
    wxyz, position = viser_pose(cams.c2w[1])
    camera = view_camera(wxyz, position, vertical_fov(cams, 1), 33, 21, cams.ndc)
    image = render_view(snap, camera, "rgb", chunk=256)  # 693 rays: the last chunk is padded
    assert image.shape == (21, 33, 3) and image.dtype == np.uint8
    o, d, r = camera.rays(0)
    want = render_rays_chunked(model, params, Rays(origins=o, directions=d, radii=r), 256).rgb
    np.testing.assert_allclose(image / 255.0, np.clip(want, 0, 1), atol=1 / 255 + 1e-6)
    assert image.std() > 0.5  # an untrained field still has structure, not a constant
    for mode in ("depth", "opacity"):
        assert render_view(snap, camera, mode, chunk=256).shape == (21, 33, 3)
    calls = []
    assert render_view(snap, camera, "rgb", chunk=256, cancelled=lambda: calls.append(1) or len(calls) > 1) is None


@pytest.fixture()
def viewer_of(trained_run):
    """A Viewer of the trained run, closed after the test."""
    from tensorf.viewer.__main__ import ViewerArgs, open_viewer

    opened = []

    def make(**kwargs):
        cfg, _ = trained_run
        opened.append(open_viewer(ViewerArgs(run_dir=cfg.run_dir, port=0, **kwargs)))
        return opened[-1]

    yield make
    for viewer in opened:
        viewer.close()


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def test_save_view_writes_the_render_and_closing_leaves_the_run_intact(trained_run, viewer_of):
    cfg, result = trained_run
    before = _listing(cfg.run_dir)
    viewer = viewer_of()
    assert viewer.snapshot[0].step == result.steps
    cams = viewer.cameras
    camera = view_camera(*viser_pose(cams.c2w[0]), vertical_fov(cams, 0), 32, 32)
    path = viewer.save_view(camera, "rgb")
    assert path.parent == Path(cfg.run_dir) / "viewer" and path.suffix == ".png"
    saved = iio.imread(path)
    np.testing.assert_array_equal(saved, viewer.render(camera, "rgb"))
    assert viewer.save_view(camera, "depth") != path  # a second save never overwrites the first
    viewer.close()
    after = _listing(cfg.run_dir)
    assert {k: v for k, v in after.items() if not k.startswith("viewer")} == before
    shutil.rmtree(Path(cfg.run_dir) / "viewer")


def test_keyframes_from_the_page_make_a_camera_path_render_360_reads(trained_run, viewer_of):
    """"Add keyframe" takes the tab's camera; "Save camera path" writes RUN/camera_path.json at the
    tab's aspect and the panel's resolution, frames and loop; the keyframes are drawn while placed."""
    import contextlib
    import types

    from tensorf.data.camera_path import read_camera_path

    cfg, _ = trained_run
    viewer = viewer_of(resolution=64)
    cams = viewer.cameras
    notes = []
    for i in (0, 4):
        wxyz, position = viser_pose(cams.c2w[i])
        camera = types.SimpleNamespace(wxyz=wxyz, position=position, fov=vertical_fov(cams, i), aspect=2.0)
        tab = types.SimpleNamespace(camera=camera, add_notification=lambda *a, **k: notes.append(a))
        viewer.path.add_keyframe_of(tab)
    assert len(viewer.path._handles) == 3  # two keyframes and the line between them
    viewer.path.seconds.value, viewer.path.fps.value = 1.0, 5
    viewer.path._save_clicked(tab)
    assert "--camera-path" in notes[-1][1]
    path = read_camera_path(Path(cfg.run_dir) / "camera_path.json")
    assert (path.width, path.height, path.fps, len(path.c2w)) == (64, 32, 5.0, 5)
    np.testing.assert_allclose(path.c2w[[0, -1]], cams.c2w[[0, 4]], atol=1e-5)
    np.testing.assert_allclose(path.fov_deg[0], math.degrees(vertical_fov(cams, 0)))
    # "Play" flies the tab's camera through the frames and leaves it at the last keyframe.
    tab.client_id, tab.atomic = -1, contextlib.nullcontext
    viewer._views[-1] = None
    viewer.path.play(tab, wait=True)
    del viewer._views[-1]
    np.testing.assert_allclose(camera.position, cams.c2w[4, :3, 3], atol=1e-5)
    forward = np.subtract(camera.look_at, camera.position)
    np.testing.assert_allclose(forward / np.linalg.norm(forward), -cams.c2w[4, :3, 2], atol=1e-5)
    assert math.isclose(camera.fov, vertical_fov(cams, 4), rel_tol=1e-6)
    # A click on a training camera's frustum takes the tab there.
    viewer._frustum_clicked(2, types.SimpleNamespace(client=tab))
    np.testing.assert_allclose(camera.position, cams.c2w[2, :3, 3], atol=1e-5)
    assert viewer.camera_index.value == 2
    # A viewer opened later starts from the saved keyframes, to go on editing the path.
    again = viewer_of(resolution=64)
    assert len(again.path.keyframes) == 2 and again.path.fps.value == 5 and len(again.path._handles) == 3
    np.testing.assert_allclose(again.path.keyframes[1][0], cams.c2w[4], atol=1e-6)
    viewer.path.clear()
    assert viewer.path._handles == [] and viewer.path.keyframes == []
    viewer.path._save_clicked(tab)
    assert notes[-1][0] == "No keyframes"
    (Path(cfg.run_dir) / "camera_path.json").unlink()


def chromium() -> str:
    """Path of a Chromium to drive headless, or skip the test saying how to get one."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser test drives Chromium)")
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium to drive: apt-get install chromium (.ci/run does)")
    return path


def _wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_headless_chromium_shows_the_trained_scene(trained_run, viewer_of, tmp_path):
    from playwright.sync_api import sync_playwright

    browser_path = chromium()
    viewer = viewer_of(resolution=256)
    width, height = 640, 400
    with sync_playwright() as pw:
        browser = launch(pw, browser_path)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(viewer.url)
            assert _wait_until(lambda: any(v.shown[0] is not None for v in list(viewer._views.values())), 120), \
                "the viewer never finished a full-resolution render for the page"
            time.sleep(1.5)  # the image's trip to the page and its draw
            shot = iio.imread(page.screenshot(path=str(tmp_path / "viewer.png")))[..., :3].astype(np.float64)
        finally:
            browser.close()
    # The page's camera is training camera 0 at the window's aspect: render that camera here too.
    cams = viewer.cameras
    camera = view_camera(*viser_pose(cams.c2w[0]), vertical_fov(cams, 0), width, height)
    want = viewer.render(camera).astype(np.float64)
    # Compare the left middle of the window: the control panel sits top right, a notice top left.
    rows, cols = slice(int(0.4 * height), int(0.9 * height)), slice(int(0.1 * width), int(0.55 * width))
    a, b = shot[rows, cols].mean(-1), want[rows, cols].mean(-1)
    assert a.std() > 5.0, "the page shows a blank area where the scene should be"
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.8, f"the page does not look like the run's render of its camera (correlation {corr:.2f})"


@pytest.mark.slow
def test_training_with_a_viewer_open_trains_the_same(scene, tmp_path):
    """--viewer renders from copies of the parameters, so a run watched by a browser tab ends
    with the very parameters of one that is not."""
    from playwright.sync_api import sync_playwright

    from tensorf.training import loop

    browser_path = chromium()
    base = tiny_config(scene, tmp_path / "plain", steps=30, checkpoint_every=0, log_every=5)
    plain = loop.train(base)
    watched_cfg = dataclasses.replace(base, run_dir=tmp_path / "watched", viewer=True, viewer_port=0,
                                      viewer_every=5, viewer_keep_open=False)
    seen = {}
    real_open = loop.open_training_viewer

    def open_and_attach(*args):
        viewer = real_open(*args)
        seen["viewer"] = viewer
        pw = sync_playwright().start()
        browser = launch(pw, browser_path)
        browser.new_page(viewport={"width": 320, "height": 240}).goto(viewer.url)
        args[-1].callback(pw.stop)
        args[-1].callback(browser.close)
        assert _wait_until(lambda: viewer._views, 30), "the page never connected"
        return viewer

    loop.open_training_viewer = open_and_attach
    try:
        watched = loop.train(watched_cfg)
    finally:
        loop.open_training_viewer = real_open
    assert seen["viewer"].snapshot[0].step == watched.steps == plain.steps
    assert seen["viewer"].snapshot[1] >= 2  # the page was sent parameters during training, not only at the end
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(watched.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
