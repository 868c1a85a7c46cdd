"""Metashape captures: the cameras XML read with Metashape's own projection (Appendix C), and a
capture exported as Metashape writes it loading as the same capture in transforms.json does."""

import json
import shutil

import numpy as np
import pytest
from conftest import assert_same_capture

from tensorf.data import lens
from tensorf.data.metashape import read_metashape
from tensorf.errors import UserError

# A DJI Mavic 3M's adjusted calibration as Metashape exports it (pixels; offsets from the centre).
CALIB = dict(f=3705.4728792737214, cx=11.6738523909, cy=-27.7497969199, b1=0.5262024073, b2=0.0,
             k1=-0.0919367147, k2=-0.0762807468, k3=0.1162639394, k4=-0.0761413904, p1=-0.0003134847, p2=0.0001164035)
W, H = 5280, 3956


def _xml(sensors: str, cameras: str, components: str = "") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<document version="2.0.0">\n  <chunk label="Chunk 1" enabled="true">\n'
            f'    <sensors next_id="2">{sensors}</sensors>\n{components}'
            f'    <cameras next_id="9" next_group_id="1">{cameras}</cameras>\n  </chunk>\n</document>\n')


def _sensor(sid: int, w: int, h: int, calib: dict, kind: str = "frame") -> str:
    terms = "".join(f"<{k}>{v!r}</{k}>" for k, v in calib.items())
    return (f'<sensor id="{sid}" label="cam {sid}" type="{kind}"><resolution width="{w}" height="{h}"/>'
            f'<property name="layer_index" value="0"/><calibration type="{kind}" class="adjusted">'
            f'<resolution width="{w}" height="{h}"/>{terms}</calibration></sensor>')


def _camera(cid: int, label: str, c2w_opencv: np.ndarray | None, sensor: int = 0, component: int = 0) -> str:
    t = "" if c2w_opencv is None else "<transform>" + " ".join(repr(float(v)) for v in c2w_opencv.ravel()) + "</transform>"
    return f'<camera id="{cid}" sensor_id="{sensor}" component_id="{component}" label="{label}">{t}<orientation>1</orientation></camera>'


def _metashape_pixel(point, c2w_opencv, c) -> tuple[float, float]:
    """Metashape Pro manual, Appendix C (frame cameras): the pixel a world point projects to."""
    X, Y, Z = np.linalg.inv(c2w_opencv)[:3] @ np.append(point, 1.0)
    x, y = X / Z, Y / Z
    r2 = x * x + y * y
    radial = 1 + c["k1"] * r2 + c["k2"] * r2**2 + c["k3"] * r2**3 + c["k4"] * r2**4
    xp = x * radial + c["p1"] * (r2 + 2 * x * x) + 2 * c["p2"] * x * y
    yp = y * radial + c["p2"] * (r2 + 2 * y * y) + 2 * c["p1"] * x * y
    return W * 0.5 + c["cx"] + xp * c["f"] + xp * c["b1"] + yp * c["b2"], H * 0.5 + c["cy"] + yp * c["f"]


def test_each_pixel_casts_the_ray_through_the_point_metashape_projects_there(tmp_path):
    """The calibration's conventions (centre offsets, b1, the r^8 term, P1 and P2 swapped against
    OpenCV) and the camera's axes, against Metashape's own formula: a world point seen at the
    pixel Metashape puts it at lies on the ray cast through that pixel."""
    rng = np.random.default_rng(0)
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rot * np.sign(np.linalg.det(rot)), [12.0, -3.0, 40.0]
    (tmp_path / "images").mkdir()
    (tmp_path / "cameras.xml").write_text(_xml(_sensor(0, W, H, CALIB), _camera(0, "DJI_0151.JPG", c2w)))
    frame, = read_metashape(tmp_path).frames
    fx, fy, cx, cy, w, h = frame.intrinsics
    assert (w, h) == (W, H) and frame.model == "opencv"
    # Points across the view, out to its corners (where k4 and the tangential terms matter most).
    cam_dirs = np.concatenate([rng.uniform([-0.7, -0.5], [0.7, 0.5], (200, 2)), np.ones((200, 1))], -1)
    points = (c2w[:3, :3] @ (cam_dirs * rng.uniform(5, 50, (200, 1))).T).T + c2w[:3, 3]
    for point in points:
        u, v = _metashape_pixel(point, c2w, CALIB)
        d = np.stack(lens.undistorted_directions((u - cx) / fx, (v - cy) / fy, np.asarray(frame.distortion),
                                                 frame.model, xp=np), -1)
        d = frame.c2w[:3, :3] @ (d * np.array([1.0, -1.0, -1.0]))  # OpenCV camera axes -> OpenGL -> world
        to_point = point - frame.c2w[:3, 3]
        off = np.linalg.norm(np.cross(to_point, d / np.linalg.norm(d)))
        assert off < 1e-6 * np.linalg.norm(to_point), (u, v, off)
    # A reader that kept Metashape's P1, P2 in OpenCV's slots misses by pixels at the corners.
    swapped = np.asarray(frame.distortion)[[0, 1, 2, 3, 5, 4]]
    u, v = _metashape_pixel(points[np.argmax(np.abs(cam_dirs[:, 0]))], c2w, CALIB)
    x, y = lens.undistort((u - cx) / fx, (v - cy) / fy, swapped, "opencv", xp=np)
    X = np.linalg.inv(c2w)[:3] @ np.append(points[np.argmax(np.abs(cam_dirs[:, 0]))], 1.0)
    assert np.hypot(x - X[0] / X[2], y - X[1] / X[2]) * fx > 1.0


def test_a_capture_exported_from_metashape_loads_as_its_transforms_json_does(tmp_path):
    """The generated scene through a lens, its cameras written as Metashape exports them (labels
    without extension, cameras in a group folder, one not aligned, one alone in a component of
    its own, an unused 360-degree camera's sensor): the same cameras and rays as the capture's
    transforms.json, less those two."""
    from tensorf.config import DataConfig
    from tensorf.data.dataset import load_dataset
    from tensorf.data.generated import generate_lens_capture

    distortion = (-0.08, 0.03, -0.004, 0.0, 0.0012, -0.0008)  # [k1, k2, k3, k4, p1, p2], OpenCV's order
    ns = generate_lens_capture(tmp_path / "ns", "opencv", distortion, size=32, n=18)
    meta = json.loads((ns / "transforms.json").read_text())
    ms = tmp_path / "ms"
    shutil.copytree(ns / "images", ms / "images")
    calib = dict(f=meta["fl_x"], cx=meta["cx"] - 16, cy=meta["cy"] - 16, b1=0.0, b2=0.0, k1=distortion[0],
                 k2=distortion[1], k3=distortion[2], k4=0.0, p1=distortion[5], p2=distortion[4])
    cameras = []
    for i, frame in enumerate(meta["frames"]):
        c2w = np.asarray(frame["transform_matrix"]) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL -> OpenCV axes
        label = frame["file_path"].split("/")[-1].removesuffix(".png")
        cameras.append(_camera(i, label, None if i == 3 else c2w, component=1 if i == 5 else 0))
    components = ('<components next_id="2" active_id="0"><component id="0" label="Component 1"/>'
                  '<component id="1" label="Component 2"/></components>\n')
    # A 360 camera's sensor beside it, which no camera here uses: its panoramas are not this lens.
    sensors = _sensor(0, 32, 32, calib) + _sensor(1, 64, 32, CALIB, "spherical")
    (ms / "cameras.xml").write_text(_xml(sensors, f'<group id="0" label="Group 1" type="folder">'
                                         f'{"".join(cameras)}</group>', components))
    meta["frames"] = [f for i, f in enumerate(meta["frames"]) if i not in (3, 5)]
    (ns / "transforms.json").write_text(json.dumps(meta))

    a, b = load_dataset(DataConfig(path=ns)), load_dataset(DataConfig(path=ms))
    assert b.format == "metashape" and len(b.train.cameras) + len(b.eval.cameras) == 16
    assert_same_capture(a, b)


@pytest.mark.parametrize("case, message", [
    ("not xml", r"cameras.xml: not valid XML"),
    ("cylindrical", r"sensor 0 \(cam 0\): a cylindrical camera is not supported"),
    ("unaligned", r"no camera has a pose \(<transform>\) and a calibrated sensor; align the photos"),
    ("bad transform", r"camera 'a': <transform> is not 16 finite numbers"),
])
def test_a_broken_cameras_xml_is_one_clear_error(case, message, tmp_path):
    c2w = np.eye(4)
    text = {"not xml": "<document><chunk>",
            "cylindrical": _xml(_sensor(0, 64, 32, CALIB, "cylindrical"), _camera(0, "a", c2w)),
            "unaligned": _xml(_sensor(0, 64, 32, CALIB), _camera(0, "a", None)),
            "bad transform": _xml(_sensor(0, 64, 32, CALIB), _camera(0, "a", c2w[:3]))}[case]
    (tmp_path / "cameras.xml").write_text(text)
    with pytest.raises(UserError, match=message):
        read_metashape(tmp_path)
