"""Camera paths: keyframes interpolated into frames, the camera_path.json file (this project's and
nerfstudio's), and render_360.py rendering one."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tensorf.data.camera_path import interpolate, read_camera_path, read_keyframes, write_camera_path
from tensorf.errors import UserError


def _keyframes(k: int = 4, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Keyframes as a user places them: around an object, at uneven heights, distances and
    spacing, each looking near its centre, with fields of view of 30-70 degrees."""
    from tensorf.data.orbit import look_at

    rng = np.random.default_rng(seed)
    azimuth = np.cumsum(rng.uniform(0.6, 1.6, k))
    position = np.stack([rng.uniform(2, 4, k) * np.cos(azimuth), rng.uniform(2, 4, k) * np.sin(azimuth),
                         rng.uniform(-0.5, 2, k)], -1)
    c2w = np.stack([look_at(p, rng.normal(scale=0.3, size=3), np.array([0.0, 0.0, 1.0])) for p in position])
    return c2w.astype(np.float64), rng.uniform(30, 70, k)


@pytest.mark.parametrize("loop", [False, True])
def test_the_path_passes_every_keyframe_and_moves_without_jumps(loop):
    keys, fovs = _keyframes()
    per = 12
    segments = len(keys) if loop else len(keys) - 1
    c2w, fov = interpolate(keys, fovs, per * segments + (0 if loop else 1), loop)
    assert len(c2w) == per * segments + (0 if loop else 1)
    for j in range(len(keys)):
        np.testing.assert_allclose(c2w[per * j], keys[j], atol=2e-6)
        assert math.isclose(fov[per * j], fovs[j])
    rot = c2w[:, :3, :3].astype(np.float64)
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    # Each step between frames is a small part of the way between the keyframes it lies between:
    # no frame jumps (a sign flip of a quaternion, a cusp) however the keyframes lie.
    ring = np.concatenate([c2w, c2w[:1]]) if loop else c2w
    moved = np.linalg.norm(np.diff(ring[:, :3, 3], axis=0), axis=1)
    turned = Rotation.from_matrix(ring[1:, :3, :3].astype(np.float64) @ ring[:-1, :3, :3].transpose(0, 2, 1)
                                  .astype(np.float64)).magnitude()
    key_ring = np.concatenate([keys, keys[:1]]) if loop else keys
    key_moved = np.linalg.norm(np.diff(key_ring[:, :3, 3], axis=0), axis=1)
    key_turned = Rotation.from_matrix(key_ring[1:, :3, :3] @ key_ring[:-1, :3, :3].transpose(0, 2, 1)).magnitude()
    assert (moved.reshape(segments, per).sum(1) < 1.6 * key_moved).all()
    assert (moved.reshape(segments, per).max(1) < 3.0 * key_moved / per).all()
    assert (turned.reshape(segments, per).sum(1) < 1.3 * key_turned).all()  # the short way round
    assert (turned.reshape(segments, per).max(1) < 3.0 * key_turned / per).all()


def test_two_keyframes_turn_the_short_way_at_an_even_rate():
    """A quarter turn about the camera's up axis, given with quaternions of opposite signs: the
    middle frame has turned 45 degrees, not 135."""
    keys = np.tile(np.eye(4), (2, 1, 1))
    keys[1, :3, :3] = Rotation.from_euler("y", 90, degrees=True).as_matrix()
    c2w, fov = interpolate(keys, [40.0, 60.0], 5)
    angles = Rotation.from_matrix(c2w[:, :3, :3].astype(np.float64)).magnitude()
    np.testing.assert_allclose(np.degrees(angles), [0, 22.5, 45, 67.5, 90], atol=0.5)
    np.testing.assert_allclose(fov, [40, 45, 50, 55, 60])


def test_the_file_holds_the_frames_and_reads_back(tmp_path):
    keys, fovs = _keyframes(3)
    written = write_camera_path(tmp_path / "camera_path.json", keys, fovs, 64, 48, fps=10, seconds=2.5, loop=True,
                                pacing="speed")
    read = read_camera_path(tmp_path / "camera_path.json")
    assert len(read.c2w) == 25 and (read.width, read.height, read.fps) == (64, 48, 10.0)
    np.testing.assert_array_equal(read.c2w, written.c2w)
    np.testing.assert_allclose(read.fov_deg, written.fov_deg)
    body = json.loads((tmp_path / "camera_path.json").read_text())
    assert len(body["keyframes"]) == 3 and body["loop"] is True
    np.testing.assert_allclose(read.focal(), 24.0 / np.tan(np.radians(read.fov_deg) / 2))
    keys_back, fovs_back, seconds, fps, loop, pacing = read_keyframes(tmp_path / "camera_path.json")
    np.testing.assert_allclose(keys_back, keys)
    np.testing.assert_allclose(fovs_back, fovs)
    assert (seconds, fps, loop, pacing) == (2.5, 10.0, True, "speed")
    body["keyframes"][1]["fov"] = "wide"
    (tmp_path / "camera_path.json").write_text(json.dumps(body))
    with pytest.raises(UserError, match="unreadable keyframes"):
        read_keyframes(tmp_path / "camera_path.json")


@pytest.mark.parametrize("loop", [False, True])
def test_speed_pacing_flies_evenly_past_unevenly_placed_keyframes(loop):
    """Keyframes 0.2 apart, then 2 (and, looped, 2 back): with the same time to each interval
    the camera crawls, then races (steps 8 times apart and more); paced by speed, its steps stay
    within 1.5x of each other, it still passes every keyframe, and turning in place is paced too."""
    keys = np.tile(np.eye(4), (3, 1, 1))
    keys[:, :3, 3] = [[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [1.4, 1.6, 0.0]]

    def steps(pacing):
        c2w, _ = interpolate(keys, [50.0] * 3, 61, loop, pacing)
        return c2w, np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=-1)

    _, even = steps("keyframes")
    assert even.max() > 8 * even.min(), (even.min(), even.max())
    c2w, paced = steps("speed")
    assert paced.max() < 1.5 * paced.min(), (paced.min(), paced.max())
    for key in keys[:, :3, 3]:  # each keyframe is passed (a frame within half a step of it)
        assert np.linalg.norm(c2w[:, :3, 3] - key, axis=-1).min() < 0.6 * paced.max()
    # Turning in place, 60 degrees then 20: paced by the angle alone (with the same time to each
    # interval, three times as fast in the first).
    spin = np.tile(np.eye(4), (3, 1, 1))
    spin[:, :3, :3] = Rotation.from_euler("y", [[0], [60], [80]], degrees=True).as_matrix()
    for pacing, spread in (("keyframes", 2.5), ("speed", 1.5)):
        c2w, _ = interpolate(spin, [50.0] * 3, 33, pacing=pacing)
        turns = np.degrees((Rotation.from_matrix(c2w[1:, :3, :3].astype(np.float64)) * Rotation.from_matrix(
            c2w[:-1, :3, :3].astype(np.float64)).inv()).magnitude())
        assert (turns.max() < spread * turns.min()) == (pacing == "speed"), (pacing, turns.min(), turns.max())


def test_nerfstudio_camera_path_files_read(tmp_path):
    """ns-render's input: camera_to_world as 16 numbers (row-major), fov vertical in degrees."""
    c2w = np.eye(4)
    c2w[:3, 3] = [0.5, -1.0, 3.0]
    body = {"render_height": 480, "render_width": 640, "camera_type": "perspective", "fps": 24, "seconds": 1,
            "smoothness_value": 0.5, "is_cycle": False, "keyframes": [{"matrix": "[1,0,0,0]", "fov": 50}],
            "camera_path": [{"camera_to_world": c2w.ravel().tolist(), "fov": 50, "aspect": 4 / 3}] * 2}
    (tmp_path / "ns.json").write_text(json.dumps(body))
    path = read_camera_path(tmp_path / "ns.json")
    np.testing.assert_allclose(path.c2w[1], c2w)
    np.testing.assert_allclose(path.focal(), 240 / math.tan(math.radians(25)))
    assert read_keyframes(tmp_path / "ns.json") is None  # its keyframes are nerfstudio's viewer's own


@pytest.mark.parametrize("body, message", [
    ("{", r"malformed camera path \(Expecting"),
    ({"render_width": 8, "render_height": 8}, r"missing key 'camera_path'"),
    ({"render_width": 8, "render_height": 8, "camera_path": [{"camera_to_world": [1, 0, 0], "fov": 50}]},
     r"cannot reshape"),
    ({"render_width": 8, "render_height": 8, "camera_type": "equirectangular", "camera_path": []},
     r"only perspective cameras"),
    ({"render_width": 8, "render_height": 8, "camera_path": [{"camera_to_world": np.eye(4).ravel().tolist(),
                                                               "fov": 190}]}, r"fov outside"),
])
def test_a_bad_camera_path_is_one_line_naming_the_file(tmp_path, body, message):
    file = tmp_path / "path.json"
    file.write_text(body if isinstance(body, str) else json.dumps(body))
    with pytest.raises(UserError, match=message) as info:
        read_camera_path(file)
    assert str(file) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="no such camera path"):
        read_camera_path(tmp_path / "missing.json")


def test_render_360_renders_a_camera_path_through_training_cameras(trained_run, tmp_path):
    """A path whose keyframes are training cameras: the frames at the keyframes are those cameras'
    renders, at the path's size, and the GIF plays at the path's rate."""
    from render_360 import Render360Args, render_orbit
    from tensorf.data.rays import Rays
    from tensorf.render import render_rays_chunked
    from tensorf.run import load_cameras, restore_run
    from tensorf.viewer.cameras import vertical_fov
    from tensorf.visualize import to_uint8

    cfg, _ = trained_run
    cams = load_cameras(cfg.run_dir, cfg)
    keys = cams.c2w[[0, 3, 6]]
    fovs = [math.degrees(vertical_fov(cams, i)) for i in (0, 3, 6)]
    write_camera_path(tmp_path / "flight.json", keys, fovs, 24, 24, fps=4, seconds=2.25)  # 9 frames, 4 a segment
    out = render_orbit(Render360Args(run_dir=cfg.run_dir, camera_path=tmp_path / "flight.json", progress=False,
                                     output=tmp_path / "flight.gif"))
    frames = iio.imread(out["rgb"], index=None)[..., :3]
    assert frames.shape[:3] == (9, 24, 24)
    assert iio.immeta(out["rgb"])["duration"] == 250
    _, model, params, _ = restore_run(cfg.run_dir)
    for frame, view in ((0, 0), (4, 3), (8, 6)):
        o, d, r = cams.resized(24, 24).rays(view)
        want = to_uint8(render_rays_chunked(model, params, Rays(origins=o, directions=d, radii=r), 4096).rgb)
        assert np.abs(frames[frame].astype(int) - want.astype(int)).max() <= 2, frame
    assert np.abs(np.diff(frames.astype(int), axis=0)).mean(axis=(1, 2, 3)).min() > 0.5  # it moves
