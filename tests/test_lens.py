"""Lens distortion: the camera models invert exactly, rays follow them, and a capture shot through a
lens trains as well as one without when the lens is known."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from tensorf.data import lens
from tensorf.data.cameras import Cameras, pixel_rays
from tensorf.data.generated import generate_lens_capture

# (model, [k1, k2, k3, k4, p1, p2]): instant-ngp's fox (OPENCV), a stronger OPENCV lens with k3,
# COLMAP's SIMPLE_RADIAL and RADIAL as OPENCV, Metashape's, and a fisheye with a 190-degree field of view.
FOX = ("opencv", (0.0578421, -0.0805099, 0.0, 0.0, -0.000980296, 0.00015575))
LENSES = {
    "opencv-fox": FOX,
    "opencv-k3": ("opencv", (-0.28, 0.09, -0.012, 0.0, 0.0012, -0.0008)),
    "simple-radial": ("opencv", (-0.05, 0.0, 0.0, 0.0, 0.0, 0.0)),
    "radial": ("opencv", (0.04, -0.02, 0.0, 0.0, 0.0, 0.0)),
    # Metashape's frame camera: radial to r^8 (geograypher's test sample of a DJI M3M; its P1, P2
    # swapped into OpenCV's order, as tensorf.data.metashape reads them).
    "metashape-k4": ("opencv", (-0.0919367147, -0.0762807468, 0.1162639394, -0.0761413904, 0.0001164035, -0.0003134847)),
    "fisheye": ("fisheye", (0.02, -0.004, 0.0005, -0.00005, 0.0, 0.0)),
}
# fox's intrinsics: 1080 x 1920, fx 1375.52, fy 1374.49, cx 554.558, cy 965.268.
W, H, FX, FY, CX, CY = 1080, 1920, 1375.52, 1374.49, 554.558, 965.268


@pytest.mark.parametrize("name", sorted(LENSES))
def test_undistorting_then_distorting_returns_every_pixel_to_1e_5_px(name):
    model, params = LENSES[name]
    fx, fy = (FX / 3.2, FY / 3.2) if model == "fisheye" else (FX, FY)  # the fisheye's corners lie past 90 degrees
    y, x = np.mgrid[0:H:7, 0:W:7].astype(np.float64) + 0.5
    xd, yd = (x - CX) / fx, (y - CY) / fy
    d = np.stack(lens.undistorted_directions(xd, yd, np.asarray(params), model, xp=np), -1)
    px, py = lens.project(d, np.asarray(params), model, xp=np)
    err = np.hypot(px - xd, py - yd) * fx
    assert err.max() < 1e-5, (name, err.max())
    if model == "fisheye":
        assert np.degrees(np.arctan2(np.hypot(d[..., 0], d[..., 1]), d[..., 2])).max() > 95  # beyond a pinhole's reach
    else:
        # And the other way: pinhole coordinates distorted, then undistorted.
        u, v = lens.undistort(*lens.distort(xd, yd, np.asarray(params), model, xp=np), np.asarray(params), model, xp=np)
        assert np.hypot(u - xd, v - yd).max() * fx < 1e-5


@pytest.mark.parametrize("name", ["opencv-k3", "metashape-k4", "fisheye"])
def test_the_ray_formula_casts_rays_through_the_undistorted_pixels(name):
    """float32 rays of the jitted formula against the float64 lens model: every ray projects back
    through its own pixel centre (to 1e-3 px, float32's reach at this focal length)."""
    model, params = LENSES[name]
    fx, fy = (FX / 3.2, FY / 3.2) if model == "fisheye" else (FX, FY)
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rot * np.sign(np.linalg.det(rot)), [0.3, -1.0, 2.0]
    y, x = (a.ravel() for a in np.mgrid[0:H:37, 0:W:37])
    o, d, _ = pixel_rays(c2w, fx, fy, CX, CY, jnp.asarray(x), jnp.asarray(y), None, jnp.asarray(params, jnp.float32),
                      model)
    np.testing.assert_allclose(np.asarray(o), np.broadcast_to(c2w[:3, 3], o.shape), atol=1e-6)
    cam = np.asarray(d, np.float64) @ c2w[:3, :3]  # camera axes, OpenGL
    px, py = lens.project(cam * np.array([1.0, -1.0, -1.0]), np.asarray(params), model, xp=np)  # to OpenCV axes
    np.testing.assert_allclose(px * fx + CX, x + 0.5, atol=1e-3)
    np.testing.assert_allclose(py * fy + CY, y + 0.5, atol=1e-3)


def test_cameras_json_round_trips_the_lens_and_novel_views_are_pinhole():
    model, params = LENSES["opencv-k3"]
    cams = Cameras(np.tile(np.eye(4, dtype=np.float32), (2, 1, 1)), np.array([50.0, 60.0]), np.array([50.0, 60.0]),
                   np.array([16.0, 16.0]), np.array([12.0, 12.0]), np.array([32, 32]), np.array([24, 24]),
                   model=model, distortion=np.array([params, params]) * [[1.0], [0.5]])
    back = Cameras.from_json(json.loads(json.dumps(cams.to_json())))
    assert back.model == "opencv"
    np.testing.assert_array_equal(back.distortion, cams.distortion)
    for a, b in zip(cams.rays(1), back.rays(1)):
        np.testing.assert_array_equal(a, b)
    # A lens bends the rays of the image's edges away from a pinhole's.
    pinhole = Cameras(cams.c2w, cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height)
    assert np.abs(cams.rays(0)[1][0, 0] - pinhole.rays(0)[1][0, 0]).max() > 1e-2
    assert cams.with_poses(cams.c2w[:1]).model == "pinhole"
    with pytest.raises(ValueError, match="camera model 'kb4'"):
        Cameras(cams.c2w, cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height, model="kb4")


# A strong barrel lens on the generated scene seen from close by (the scene fills the frame): the
# image's edges move by about 2.6 px of 48, its corners by 6.7.
BARREL = ("opencv", (-0.9, 0.5, 0.0, 0.0, 0.004, -0.003))


@pytest.fixture(scope="module")
def lens_captures(tmp_path_factory):
    root = tmp_path_factory.mktemp("lens")
    return {name: generate_lens_capture(root / name, *lens_, size=48, n=40, radius=2.8)
            for name, lens_ in (("pinhole", ("pinhole", (0.0,) * 6)), ("barrel", BARREL))}


@pytest.mark.slow  # three trainings, 95 s on 2 cores: on its own CI line
def test_a_capture_through_a_lens_trains_as_well_as_one_without_when_the_lens_is_known(lens_captures, tmp_path):
    from tensorf.training.loop import train

    def run(name, capture):
        cfg = tiny_config(capture, tmp_path / name, steps=400, batch_size=1024, log_every=100, checkpoint_every=0,
                          final_eval=True, data__aabb=None, model__upsample_steps=(100,),
                          model__n_voxels_init=32**3, model__n_voxels_final=48**3, model__max_samples=96)
        return train(cfg).eval_metrics["psnr"]

    pinhole = run("pinhole", lens_captures["pinhole"])
    known = run("known", lens_captures["barrel"])
    # The same photos with the lens left out of transforms.json: rays miss their pixels by up to 3 px.
    ignored = tmp_path / "ignored_lens"  # the capture; its run goes to tmp_path / "ignored"
    import shutil
    shutil.copytree(lens_captures["barrel"], ignored)
    meta = json.loads((ignored / "transforms.json").read_text())
    (ignored / "transforms.json").write_text(json.dumps({**meta, **dict.fromkeys(lens.PARAMS, 0.0)}))
    blind = run("ignored", ignored)
    assert known > pinhole - 0.5, (known, pinhole)
    assert known > blind + 1.0, (known, blind)  # measured: 22.1 known, 21.5 pinhole, 20.4 ignored
