"""360-degree cameras: equirectangular panoramas, as Agisoft Metashape's spherical sensors and
nerfstudio's EQUIRECTANGULAR camera_model write them, read, trained, rendered and exported."""

import json
import math

import numpy as np
import pytest

from conftest import tiny_config
from tensorf.data import lens
from tensorf.data.cameras import Cameras
from tensorf.data.generated import generate_panorama_capture
from tensorf.data.metashape import read_metashape
from tensorf.data.nerfstudio import read_transforms
from tensorf.errors import UserError


def _on_ray(point, origin, direction) -> float:
    """The distance of point from the ray, over its distance from the origin."""
    to_point = point - origin
    return float(np.linalg.norm(np.cross(to_point, direction / np.linalg.norm(direction))) / np.linalg.norm(to_point))


def test_a_metashape_spherical_cameras_pixels_cast_the_rays_through_the_points_it_projects_there(tmp_path):
    """Metashape Pro's manual, Appendix C (spherical cameras): x = atan2(X, Z), y = atan2(Y,
    sqrt(X^2 + Z^2)), u = w / 2 + f x, v = h / 2 + f y, f = w / (2 pi). A spherical sensor needs no
    calibration; a world point anywhere around the camera, behind it too, lies on the ray cast
    through the pixel the formula puts it at."""
    w, h = 2048, 1024
    rng = np.random.default_rng(3)
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rot * np.sign(np.linalg.det(rot)), [1.0, -2.0, 0.5]
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<document version="2.0.0"><chunk>'
           f'<sensors><sensor id="0" label="360" type="spherical"><resolution width="{w}" height="{h}"/></sensor>'
           '</sensors><cameras><camera id="0" sensor_id="0" label="pano"><transform>'
           + " ".join(repr(float(v)) for v in c2w.ravel()) + "</transform></camera></cameras></chunk></document>")
    (tmp_path / "cameras.xml").write_text(xml)
    (tmp_path / "images").mkdir()
    frame, = read_metashape(tmp_path).frames
    fx, fy, cx, cy, fw, fh = frame.intrinsics
    assert (frame.model, fw, fh) == ("equirectangular", w, h)
    f = w / (2 * math.pi)
    points = c2w[:3, 3] + rng.normal(size=(300, 3)) * rng.uniform(0.5, 20, (300, 1))
    for point in points:
        X, Y, Z = np.linalg.inv(c2w)[:3] @ np.append(point, 1.0)  # Metashape's camera axes: OpenCV's
        u, v = w / 2 + f * math.atan2(X, Z), h / 2 + f * math.atan2(Y, math.hypot(X, Z))
        d = np.stack(lens.undistorted_directions((u - cx) / fx, (v - cy) / fy, None, frame.model, xp=np))
        d = frame.c2w[:3, :3] @ (d * np.array([1.0, -1.0, -1.0]))  # OpenCV camera axes -> OpenGL -> world
        assert _on_ray(point, frame.c2w[:3, 3], d) < 1e-9
    # The forward model inverts it: the point's own direction back to its pixel.
    X = np.linalg.inv(c2w)[:3] @ np.append(points[0], 1.0)
    lon, lat = lens.project(X, None, "equirectangular", xp=np)
    assert (fx * lon + cx, fy * lat + cy) == pytest.approx((w / 2 + f * math.atan2(X[0], X[2]),
                                                            h / 2 + f * math.atan2(X[1], math.hypot(X[0], X[2]))))


def test_a_transforms_json_panorama_casts_nerfstudios_rays(tmp_path):
    """nerfstudio's EQUIRECTANGULAR rays (cameras.py; pixel centres, coordinates normalised by
    fl_x = w / 2 and fl_y = h, y negated): theta = -pi x, phi = pi (0.5 - y), direction
    (-sin theta sin phi, cos phi, -cos theta sin phi) in OpenGL camera axes. Every pixel's ray
    here is that one, through the training ray formula."""
    capture = read_transforms(generate_panorama_capture(tmp_path / "pano", size=8, n=3))
    meta = json.loads((tmp_path / "pano" / "transforms.json").read_text())
    frame = capture.frames[1]
    fx, fy, cx, cy, w, h = frame.intrinsics
    cams = Cameras(frame.c2w[None].astype(np.float32), np.array([fx]), np.array([fy]), np.array([cx]),
                   np.array([cy]), np.array([w]), np.array([h]), model=frame.model)
    _, dirs, _ = cams.rays(0)
    y, x = np.mgrid[:h, :w] + 0.5
    nx, ny = (x - meta["cx"]) / meta["fl_x"], -(y - meta["cy"]) / meta["fl_y"]
    theta, phi = -math.pi * nx, math.pi * (0.5 - ny)
    local = np.stack([-np.sin(theta) * np.sin(phi), np.cos(phi), -np.cos(theta) * np.sin(phi)], -1)
    np.testing.assert_allclose(dirs, local @ frame.c2w[:3, :3].T, atol=2e-6)
    # The image's centre, between its four middle pixels, looks straight ahead, down the camera's -z.
    centre = dirs[h // 2 - 1:h // 2 + 1, w // 2 - 1:w // 2 + 1].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(centre / np.linalg.norm(centre), -frame.c2w[:3, 2], atol=1e-6)


def test_a_panorama_capture_trains_contracted_renders_its_walk_and_exports_as_nerfstudio_writes_it(tmp_path, capsys):
    """A ring of 360-degree cameras around the generated scene, the backdrop all around: read as
    360 and contracted with no flag, trained past the photos' mean colour by 5 dB on held-out
    panoramas; novel views replay the cameras' walk as 90-degree pinholes; the cameras export
    with nerfstudio's own panorama intrinsics, and COLMAP, which has no panorama camera, is
    refused in one line."""
    from render_360 import Render360Args, render_orbit
    from tensorf.config import DataConfig
    from tensorf.data.dataset import load_dataset
    from tensorf.export_cameras import ExportCamerasArgs, main
    from tensorf.training.loop import train

    capture = generate_panorama_capture(tmp_path / "pano", size=16, n=24)
    data = load_dataset(DataConfig(path=capture))
    assert data.kind.kind == "360" and data.scene.contraction == "linf" and data.turntable is None
    steps = 300
    cfg = tiny_config(capture, tmp_path / "run", steps=steps, checkpoint_every=0, data__aabb=None, final_eval=True,
                      batch_size=512, model__upsample_steps=(steps // 3,), model__n_voxels_final=32**3)
    result = train(cfg)
    flat = data.train.images.mean((0, 1, 2))
    baseline = np.mean([-10 * np.log10(np.mean((image - flat) ** 2)) for image in data.eval.images])
    assert result.eval_metrics["psnr"] > baseline + 5.0, (result.eval_metrics["psnr"], baseline)  # 23.0 against 16.7
    assert "ws_psnr" in result.eval_metrics  # PSNR over the sphere beside the pixels'

    frames = render_orbit(Render360Args(run_dir=tmp_path / "run", progress=False))
    import imageio.v3 as iio

    walk = iio.imread(frames["rgb"])
    assert walk.shape[:3] == (24, 16, 16)  # every camera of the walk, half the panorama's width
    # The viewer places its camera at a training panorama with the field of view of those views.
    from tensorf.run import load_cameras
    from tensorf.viewer.cameras import vertical_fov

    assert vertical_fov(load_cameras(tmp_path / "run"), 0) == pytest.approx(math.pi / 2)

    out = main(ExportCamerasArgs(run_dir=tmp_path / "run"))
    body = json.loads(out.read_text())
    assert (body["camera_model"], body["fl_x"], body["fl_y"], body["w"], body["h"]) == \
        ("EQUIRECTANGULAR", pytest.approx(16.0), pytest.approx(16.0), 32, 16)
    with pytest.raises(UserError, match="COLMAP has no camera model for equirectangular panoramas"):
        main(ExportCamerasArgs(run_dir=tmp_path / "run", format="colmap"))

