"""OpenSfM / OpenDroneMap captures: reconstruction.json read with OpenSfM's own camera models
(doc/source/geometry.rst), and a capture written as OpenSfM writes it loading as the same capture
its transforms.json does."""

import json
import math
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import assert_same_capture
from scipy.spatial.transform import Rotation

from tensorf.data import lens
from tensorf.data.opensfm import read_opensfm
from tensorf.errors import UserError

W, H = 5472, 3648
# A DJI FC6310R's brown camera as OpenDroneMap writes it (normalised by the larger side).
BROWN = {"projection_type": "brown", "width": W, "height": H, "focal_x": 0.6664614123723713,
         "focal_y": 0.6664614123723713, "c_x": -0.0015460447606643697, "c_y": 0.004751874732641298,
         "k1": -0.2640629100413887, "k2": 0.10188934223670705, "p1": 0.0007345906274317972,
         "p2": 0.0002595206713083041, "k3": -0.02581956399353581}


def _opensfm_pixel(x_cam: np.ndarray, cam: dict) -> tuple[float, float]:
    """geometry.rst: a camera-frame point to OpenSfM's pixel coordinates (the top-left pixel's
    centre at 0), for the brown and spherical models."""
    x, y, z = x_cam
    size = max(cam["width"], cam["height"])
    if cam["projection_type"] == "spherical":
        lon, lat = math.atan2(x, z), math.atan2(-y, math.hypot(x, z))
        u, v = lon / (2 * math.pi), -lat / (2 * math.pi)
    else:
        xn, yn = x / z, y / z
        r2 = xn * xn + yn * yn
        dr = 1 + cam["k1"] * r2 + cam["k2"] * r2**2 + cam["k3"] * r2**3
        dtx = 2 * cam["p1"] * xn * yn + cam["p2"] * (r2 + 2 * xn * xn)
        dty = 2 * cam["p2"] * xn * yn + cam["p1"] * (r2 + 2 * yn * yn)
        u, v = cam["focal_x"] * (dr * xn + dtx) + cam["c_x"], cam["focal_y"] * (dr * yn + dty) + cam["c_y"]
    return size * u + (cam["width"] - 1) / 2, size * v + (cam["height"] - 1) / 2


def _shot(w2c: np.ndarray, camera: str) -> dict:
    return {"rotation": Rotation.from_matrix(w2c[:3, :3]).as_rotvec().tolist(), "translation": w2c[:3, 3].tolist(),
            "camera": camera}


@pytest.mark.parametrize("cam", [BROWN, {"projection_type": "spherical", "width": 4096, "height": 2048}],
                         ids=["brown", "spherical"])
def test_each_pixel_casts_the_ray_through_the_point_opensfm_projects_there(cam, tmp_path):
    """OpenSfM's conventions (normalised by the larger side, pixel coordinates from the top-left
    pixel's centre, the shot's world-to-camera axis-angle) against its own formula: a world
    point seen at the pixel OpenSfM puts it at lies on the ray cast through that pixel."""
    rng = np.random.default_rng(1)
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = Rotation.from_rotvec(rng.normal(size=3)).as_matrix(), [3.0, -1.0, 20.0]
    (tmp_path / "reconstruction.json").write_text(json.dumps(
        [{"cameras": {"c": cam}, "shots": {"DJI_0001.JPG": _shot(w2c, "c")}, "points": {}}]))
    frame, = read_opensfm(tmp_path).frames
    fx, fy, cx, cy, w, h = frame.intrinsics
    assert (w, h) == (cam["width"], cam["height"])
    if cam["projection_type"] == "spherical":
        local = rng.normal(size=(200, 3))  # all around, behind too
    else:
        local = np.concatenate([rng.uniform([-0.7, -0.5], [0.7, 0.5], (200, 2)), np.ones((200, 1))], -1)
    local *= rng.uniform(2, 50, (200, 1))
    c2w = np.linalg.inv(w2c)
    for point in local @ c2w[:3, :3].T + c2w[:3, 3]:
        px, py = _opensfm_pixel(w2c[:3, :3] @ point + w2c[:3, 3], cam)
        u, v = px + 0.5, py + 0.5  # our pixel coordinates: the top-left pixel's centre at 0.5
        d = np.stack(lens.undistorted_directions((u - cx) / fx, (v - cy) / fy, np.asarray(frame.distortion),
                                                 frame.model, xp=np))
        d = frame.c2w[:3, :3] @ (d * np.array([1.0, -1.0, -1.0]))  # OpenCV camera axes -> OpenGL -> world
        to_point = point - frame.c2w[:3, 3]
        assert np.linalg.norm(np.cross(to_point, d / np.linalg.norm(d))) < 1e-6 * np.linalg.norm(to_point)


def test_a_capture_reconstructed_by_opensfm_loads_as_its_transforms_json_does(tmp_path, capsys):
    """The generated scene through a lens, its cameras and points written as OpenSfM writes them
    (a brown camera normalised by the larger side; a second, smaller reconstruction beside the
    first), in an OpenDroneMap project's layout: the same cameras, rays and images as the
    capture's transforms.json, the points in the same place."""
    from tensorf.config import DataConfig
    from tensorf.data.dataset import load_dataset
    from tensorf.data.generated import generate_lens_capture

    distortion = (-0.08, 0.03, -0.004, 0.0, 0.0012, -0.0008)  # [k1, k2, k3, k4, p1, p2]
    ns = generate_lens_capture(tmp_path / "ns", "opencv", distortion, size=32, n=18)
    meta = json.loads((ns / "transforms.json").read_text())
    odm = tmp_path / "odm"
    shutil.copytree(ns / "images", odm / "photos")  # found through image_list.txt, as OpenSfM finds them
    size = max(meta["w"], meta["h"])
    cam = {"projection_type": "brown", "width": meta["w"], "height": meta["h"], "focal_x": meta["fl_x"] / size,
           "focal_y": meta["fl_y"] / size, "c_x": (meta["cx"] - meta["w"] / 2) / size,
           "c_y": (meta["cy"] - meta["h"] / 2) / size, "k1": distortion[0], "k2": distortion[1],
           "k3": distortion[2], "p1": distortion[4], "p2": distortion[5]}
    shots = {}
    for frame in meta["frames"]:
        c2w = np.asarray(frame["transform_matrix"]) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL -> OpenCV axes
        shots[frame["file_path"].split("/")[-1]] = _shot(np.linalg.inv(c2w), "v2 generated 32 32 brown")
    points = np.random.default_rng(2).uniform(-0.9, 0.9, (300, 3))
    rec = {"cameras": {"v2 generated 32 32 brown": cam}, "shots": shots,
           "points": {str(i): {"coordinates": p.tolist(), "color": [128, 128, 128]} for i, p in enumerate(points)}}
    other = {"cameras": rec["cameras"], "shots": dict(list(shots.items())[:3]), "points": {}}
    (odm / "opensfm").mkdir()
    (odm / "opensfm" / "reconstruction.json").write_text(json.dumps([other, rec]))
    (odm / "opensfm" / "image_list.txt").write_text("".join(f"../photos/{name}\n" for name in shots))
    # A passer-by masked out of one photo: OpenSfM's masks/<image>.png, nerfstudio's mask_path.
    mask = np.full((meta["h"], meta["w"]), 255, np.uint8)
    mask[4:20, 6:14] = 0
    first = meta["frames"][1]["file_path"].split("/")[-1]
    (odm / "masks").mkdir()
    iio.imwrite(odm / "masks" / f"{first}.png", mask)
    iio.imwrite(ns / f"{first}.mask.png", mask)
    meta["frames"][1]["mask_path"] = f"{first}.mask.png"
    with open(ns / "sparse_pc.ply", "w") as ply:
        ply.write(f"ply\nformat ascii 1.0\nelement vertex {len(points)}\nproperty float x\nproperty float y\n"
                  "property float z\nend_header\n" + "".join(f"{x} {y} {z}\n" for x, y, z in points))
    meta["ply_file_path"] = "sparse_pc.ply"
    (ns / "transforms.json").write_text(json.dumps(meta))

    a, b = load_dataset(DataConfig(path=ns)), load_dataset(DataConfig(path=odm))
    assert b.format == "opensfm" and "2 reconstructions (3, 18 shots), aligned apart; reading the largest (18)" in \
        capsys.readouterr().err
    np.testing.assert_allclose(b.scene.aabb, a.scene.aabb, atol=1e-5)  # the box is set by the same points
    assert_same_capture(a, b)
    assert a.train.masks is not None and (~a.train.masks).sum() == 16 * 8
    np.testing.assert_array_equal(b.train.masks, a.train.masks)


@pytest.mark.parametrize("case, message", [
    ("not json", r"reconstruction.json: not a readable JSON file"),
    ("empty", r"no reconstruction with shots .* the photos were not aligned"),
    ("dual", r"camera 'c': projection_type 'dual' is not supported"),
    ("unknown camera", r"shot 'a.jpg': its camera 'x' is not among the reconstruction's cameras"),
])
def test_a_broken_reconstruction_is_one_clear_error(case, message, tmp_path):
    shot = {"rotation": [0.0, 0.0, 0.0], "translation": [0.0, 0.0, 0.0], "camera": "c"}
    text = {"not json": "[{",
            "empty": json.dumps([{"cameras": {}, "shots": {}}]),
            "dual": json.dumps([{"cameras": {"c": {"projection_type": "dual", "width": 8, "height": 8}},
                                 "shots": {"a.jpg": shot}}]),
            "unknown camera": json.dumps([{"cameras": {"c": BROWN},
                                           "shots": {"a.jpg": {**shot, "camera": "x"}}}])}[case]
    (tmp_path / "reconstruction.json").write_text(text)
    with pytest.raises(UserError, match=message):
        read_opensfm(tmp_path)
