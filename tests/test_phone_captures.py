"""Phone captures as their apps export them: Polycam's raw data (keyframes/) and Record3D's
(metadata.json + rgb/), each written as the app writes it and loading as the same capture the
transforms.json nerfstudio makes of it does (its ns-process-data polycam / record3d conventions)."""

import json
import shutil

import imageio.v3 as iio

import numpy as np
import pytest
from conftest import assert_same_capture
from scipy.spatial.transform import Rotation

from tensorf.config import DataConfig
from tensorf.data import polycam, record3d
from tensorf.data.dataset import load_dataset
from tensorf.data.generated import generate_lens_capture, render_depth
from tensorf.errors import UserError

SIZE = 48  # Polycam's 15-pixel border leaves 18 x 18


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """(a generated 360 capture's folder, its transforms.json)."""
    ns = generate_lens_capture(tmp_path_factory.mktemp("ns"), size=SIZE, n=12)
    return ns, json.loads((ns / "transforms.json").read_text())


def _polycam_camera(meta: dict, c2w: np.ndarray, blur: float) -> dict:
    """A camera file as Polycam writes it: its pose in Polycam's y-up world (the rows nerfstudio
    takes in the order 2, 0, 1 to make the transforms.json's)."""
    t = np.linalg.inv(polycam.WORLD) @ c2w
    cam = {"fx": meta["fl_x"], "fy": meta["fl_y"], "cx": meta["cx"], "cy": meta["cy"], "width": meta["w"],
           "height": meta["h"], "blur_score": blur}
    return cam | {f"t_{i}{j}": float(t[i, j]) for i in range(3) for j in range(4)}


def test_a_polycam_export_loads_as_its_transforms_json_with_the_black_border_masked(capture, tmp_path, capsys):
    ns, meta = capture
    keyframes = tmp_path / "scan" / "keyframes"
    for sub in ("corrected_images", "corrected_cameras", "images", "cameras"):
        (keyframes / sub).mkdir(parents=True)
    for k, frame in enumerate(meta["frames"]):
        name = f"{1000 + k}"  # Polycam names a keyframe by a number; both folders share it
        c2w = np.asarray(frame["transform_matrix"])
        shutil.copy(ns / frame["file_path"], keyframes / "corrected_images" / f"{name}.png")
        (keyframes / "corrected_cameras" / f"{name}.json").write_text(json.dumps(_polycam_camera(meta, c2w, 120.0)))
        # The recorded poses, before Polycam's optimisation: off, and not to be read beside corrected ones.
        shutil.copy(ns / frame["file_path"], keyframes / "images" / f"{name}.png")
        (keyframes / "cameras" / f"{name}.json").write_text(
            json.dumps(_polycam_camera(meta, c2w + 0.05, 120.0)))
    # A blurred keyframe, which nerfstudio's min_blur_score 25 leaves out.
    shutil.copy(ns / meta["frames"][0]["file_path"], keyframes / "corrected_images" / "9999.png")
    (keyframes / "corrected_cameras" / "9999.json").write_text(
        json.dumps(_polycam_camera(meta, np.eye(4), 10.0)))

    a, b = load_dataset(DataConfig(path=ns)), load_dataset(DataConfig(path=tmp_path / "scan"))
    assert b.format == "polycam"
    assert "1 keyframes have a blur_score under 25 (nerfstudio's cut); leaving them out" in capsys.readouterr().err
    assert_same_capture(a, b)
    # The undistorted keyframes' black edges: 15 pixels each side, neither trained on nor judged.
    for views in (b.train, b.eval):
        inner = np.zeros((SIZE, SIZE), bool)
        inner[15:-15, 15:-15] = True
        np.testing.assert_array_equal(views.masks, np.broadcast_to(inner, views.masks.shape))
    # Its LiDAR depth maps (keyframes/depth/, millimetres at a quarter of the photo's size, as
    # Polycam's 256x192 against 1024x768) for --data.depth: scaled up to the photo, then by the
    # poses' normalisation.
    (keyframes / "depth").mkdir()
    for k, frame in enumerate(meta["frames"]):
        depth = render_depth(np.asarray(frame["transform_matrix"]), SIZE)[1::4, 1::4]
        iio.imwrite(keyframes / "depth" / f"{1000 + k}.png", np.round(depth * 1000).astype(np.uint16))
    c = load_dataset(DataConfig(path=tmp_path / "scan", depth=True))
    scale = 1.0 / np.linalg.norm(c.to_source[:3, 0])
    truth = np.stack([render_depth(np.asarray(meta["frames"][int(n) - 1000]["transform_matrix"]), SIZE)[1::4, 1::4]
                      for n in c.train.names]).repeat(4, 1).repeat(4, 2)  # each map pixel covers 4 x 4
    assert (truth > 0).mean() > 0.2
    np.testing.assert_allclose(c.train.depths / scale, truth, atol=1e-3)
    # Exports go back to Polycam's own world: the training cameras' centres land on its t_i3.
    centres = b.train.cameras.c2w[:, :3, 3] @ b.to_source[:3, :3].T + b.to_source[:3, 3]
    files = [json.loads((keyframes / "corrected_cameras" / f"{n}.json").read_text()) for n in b.train.names]
    np.testing.assert_allclose(centres, [[c["t_03"], c["t_13"], c["t_23"]] for c in files], atol=1e-4)


def test_a_polycam_export_without_corrected_keyframes_reads_the_recorded_ones_at_half_size(capture, tmp_path):
    ns, meta = capture
    keyframes = tmp_path / "keyframes"
    (keyframes / "images").mkdir(parents=True)
    (keyframes / "cameras").mkdir()
    for k, frame in enumerate(meta["frames"]):
        shutil.copy(ns / frame["file_path"], keyframes / "images" / f"{k:03d}.png")
        (keyframes / "cameras" / f"{k:03d}.json").write_text(
            json.dumps(_polycam_camera(meta, np.asarray(frame["transform_matrix"]), 100.0)))
    a = load_dataset(DataConfig(path=ns, downscale=2))
    b = load_dataset(DataConfig(path=keyframes, downscale=2))  # the keyframes/ folder itself will do
    assert_same_capture(a, b)
    assert b.train.masks is None  # the recorded photos have no black border


def _record3d(ns, meta: dict, out, extra: int = 0, r3d: bool = False):
    """The capture as Record3D exports it: rgb/<i>.png and metadata.json (poses as quaternion x, y,
    z, w then position, scipy's order; K column by column), plus `extra` poses with no frame; r3d:
    as a .r3d file unzips, rgbd/ (the frames beside their compressed depth) and `metadata`."""
    frames = out / ("rgbd" if r3d else "rgb")
    frames.mkdir(parents=True)
    poses = []
    for k, frame in enumerate(meta["frames"]):
        c2w = np.asarray(frame["transform_matrix"])
        poses.append([*Rotation.from_matrix(c2w[:3, :3]).as_quat(), *c2w[:3, 3]])
        shutil.copy(ns / frame["file_path"], frames / f"{k}.png")
        if r3d:
            (frames / f"{k}.depth").write_bytes(b"bvx2")  # LZFSE, not read
    poses += [[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]] * extra
    k = np.array([[meta["fl_x"], 0, meta["cx"]], [0, meta["fl_y"], meta["cy"]], [0, 0, 1]])
    (out / ("metadata" if r3d else "metadata.json")).write_text(
        json.dumps({"poses": poses, "K": k.T.reshape(-1).tolist(), "w": meta["w"], "h": meta["h"], "fps": 60}))
    return out


@pytest.mark.parametrize("r3d", [False, True], ids=["exported", "r3d-unzipped"])
def test_a_record3d_export_loads_as_its_transforms_json(capture, tmp_path, r3d):
    ns, meta = capture
    out = _record3d(ns, meta, tmp_path / "r3d", extra=2, r3d=r3d)
    frames = out / ("rgbd" if r3d else "rgb")
    shutil.copy(frames / "3.png", frames / "3(1).png")  # a copy, not a frame
    a, b = load_dataset(DataConfig(path=ns)), load_dataset(DataConfig(path=out))
    assert b.format == "record3d"
    assert_same_capture(a, b)


def test_a_long_record3d_recording_is_read_at_evenly_spread_frames(capture, tmp_path, monkeypatch, capsys):
    ns, meta = capture
    out = _record3d(ns, meta, tmp_path / "r3d")
    monkeypatch.setattr(record3d, "MAX_FRAMES", 5)
    frames = record3d.read_record3d(out).frames
    assert [f.name for f in frames] == ["0.png", "3.png", "6.png", "8.png", "11.png"]
    assert "12 frames; reading 5 evenly spread" in capsys.readouterr().err
    np.testing.assert_allclose(frames[2].c2w, meta["frames"][6]["transform_matrix"], atol=1e-6)


@pytest.mark.parametrize("case, message", [
    ("polycam no key", r"1000.json: no 'fx' \(a Polycam camera holds fx, fy, cx, cy, width, height and t_00"),
    ("polycam not json", r"1000.json: not a readable JSON file"),
    ("record3d poses", r"metadata.json: poses must be rows of 7 finite numbers .* got shape \(1, 6\)"),
    ("record3d frame without pose", r"rgb: frame 1.jpg has no pose \(metadata.json holds 1\)"),
])
def test_a_broken_phone_export_is_one_clear_error(case, message, tmp_path):
    if case.startswith("polycam"):
        (tmp_path / "keyframes" / "cameras").mkdir(parents=True)
        (tmp_path / "keyframes" / "images").mkdir()
        (tmp_path / "keyframes" / "cameras" / "1000.json").write_text("{" if case.endswith("json") else "{}")
    else:
        (tmp_path / "rgb").mkdir()
        (tmp_path / "rgb" / "1.jpg").write_bytes(b"")
        pose = [0.0] * 6 if case.endswith("poses") else [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        (tmp_path / "metadata.json").write_text(json.dumps({"poses": [pose], "K": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                                                            "w": 4, "h": 4}))
    with pytest.raises(UserError, match=message):
        load_dataset(DataConfig(path=tmp_path))
