"""Real-capture formats: LLFF with NDC rays, nerfstudio / instant-ngp transforms.json."""

import json
import shutil

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SHARED_DATA, tiny_config
from tensorf.config import DataConfig
from tensorf.data.cameras import Cameras, ndc_rays
from tensorf.data.dataset import load_dataset
from tensorf.data.generated import generate_capture
from tensorf.errors import UserError

FERN = SHARED_DATA / "nerf_llff_data" / "fern"


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """A generated forward-facing capture, 16 views of 32x32, in LLFF and transforms.json layouts."""
    return generate_capture(tmp_path_factory.mktemp("capture"))


def _project(points, sx, sy, near):
    """NDC of world points (NeRF appendix C): x, y by perspective projection, z = 1 + 2 near / z."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([-sx * x / z, -sy * y / z, 1 + 2 * near / z], -1)


def test_ndc_rays_are_the_projected_world_rays_from_the_near_plane():
    rng = np.random.default_rng(0)
    o = rng.uniform(-0.3, 0.3, (64, 3))
    d = np.concatenate([rng.uniform(-0.4, 0.4, (64, 2)), -np.ones((64, 1))], -1)
    sx, sy, near = 1.6, 2.1, 1.0
    o_ndc, d_ndc = (np.asarray(a, np.float64) for a in ndc_rays(jnp.asarray(o), jnp.asarray(d), sx, sy, near))
    # The NDC origin is where the ray crosses the near plane z = -near: NDC z = -1.
    np.testing.assert_allclose(o_ndc[:, 2], -1.0, atol=1e-6)
    t_near = (-near - o[:, 2]) / d[:, 2]
    np.testing.assert_allclose(o_ndc, _project(o + t_near[:, None] * d, sx, sy, near), atol=1e-5)
    # Straight lines stay straight: every world point along the ray projects onto the NDC ray,
    # and going to infinity along it reaches NDC z = +1 at NDC parameter 1.
    for t in (0.5, 2.0, 10.0, 1e3):
        p = _project(o + (t_near + t)[:, None] * d, sx, sy, near)
        s = (p[:, 2] - o_ndc[:, 2]) / d_ndc[:, 2]
        np.testing.assert_allclose(p, o_ndc + s[:, None] * d_ndc, atol=1e-4)
        assert np.all((s > 0) & (s < 1))
    np.testing.assert_allclose(o_ndc[:, 2] + d_ndc[:, 2], 1.0, atol=1e-5)


def test_ndc_pixel_rays_of_a_camera_at_the_origin_run_parallel_through_the_image_square():
    cams = Cameras.centered(np.eye(4)[None], 8, 6, 5.0, ndc_near=1.0)
    o, d = cams.rays(0)
    np.testing.assert_allclose(d.reshape(-1, 3), np.tile([0.0, 0.0, 1.0], (48, 1)), atol=1e-6)
    # Pixel centres map to (x + 0.5 - cx) / cx: the image spans NDC [-1, 1] in x and y.
    np.testing.assert_allclose(o[0, :, 0], (np.arange(8) + 0.5 - 4) / 4, atol=1e-6)
    np.testing.assert_allclose(o[:, 0, 1], -(np.arange(6) + 0.5 - 3) / 3, atol=1e-6)


def test_llff_and_transforms_json_load_the_same_capture(capture):
    llff = load_dataset(DataConfig(path=capture, format="llff", ndc=False))
    ns = load_dataset(DataConfig(path=capture, format="nerfstudio"))
    assert llff.format == "llff" and ns.format == "nerfstudio"
    assert len(llff.train.images) == len(ns.train.images) == 14 and ns.eval.names == llff.eval.names == ("image000", "image008")
    np.testing.assert_array_equal(llff.train.images, ns.train.images)
    # The same rays up to each format's normalisation (a rotation, translation and scale): the
    # angles between rays of different views agree, and camera distances agree up to one factor.
    (a0, a5), (b0, b5) = ([c.rays(i) for i in (0, 5)] for c in (llff.train.cameras, ns.train.cameras))
    cross_angles = lambda u, v: np.einsum("hwc,hwc->hw", u[1], v[1])  # noqa: E731  (o, d) pairs
    np.testing.assert_allclose(cross_angles(a0, a5), cross_angles(b0, b5), atol=1e-5)
    c1, c2 = llff.train.cameras.c2w[:, :3, 3], ns.train.cameras.c2w[:, :3, 3]
    d1, d2 = (np.linalg.norm(c[:, None] - c[None], axis=-1) for c in (c1, c2))
    np.testing.assert_allclose(d1, d2 * (d1[0, 1] / d2[0, 1]), atol=1e-5)
    # LLFF's conventions: the nearest bound rescaled to 1 / 0.75, poses recentred on their mean.
    np.testing.assert_allclose(llff.train.cameras.c2w[:, :3, 3].mean(0), 0.0, atol=0.1)
    # The default for LLFF is NDC: origins on the near plane, the official NDC box.
    ndc = load_dataset(DataConfig(path=capture))
    assert ndc.format == "llff" and ndc.scene.ndc and ndc.scene.aabb == ((-1.5, -1.67, -1.0), (1.5, 1.67, 1.0))
    np.testing.assert_allclose(ndc.train.cameras.rays(0)[0][..., 2], -1.0, atol=1e-5)


@pytest.mark.parametrize("fmt", ["llff", "nerfstudio"])
def test_captures_train_past_a_threshold_and_render_their_path(capture, tmp_path, fmt):
    import render_360
    from tensorf.training.loop import train

    cfg = tiny_config(capture, tmp_path / fmt, steps=150, batch_size=512, log_every=50, checkpoint_every=0,
                      final_eval=True, data__format=fmt, data__aabb=None, model__upsample_steps=(50,),
                      model__filter_rays=fmt != "llff")
    result = train(cfg)
    assert result.eval_metrics["psnr"] > 17.0, result.eval_metrics  # 150 tiny steps: ~18-20 dB
    out = render_360.render_orbit(render_360.Render360Args(run_dir=tmp_path / fmt, frames=4, resolution=(8, 8),
                                                           progress=False, depth=False, opacity=False))
    frames = len(iio.imread(out["rgb"]))
    assert frames == (120 if fmt == "llff" else 4)  # LLFF: its spiral; others: an orbit


@pytest.mark.skipif(not FERN.is_dir(), reason="needs ../shared/data/nerf_llff_data/fern")
def test_fern_loads_with_sensible_poses_and_bounds():
    data = load_dataset(DataConfig(path=FERN, downscale=8))
    assert data.format == "llff" and data.eval.names == ("image000", "image008", "image016")
    assert data.train.images.shape == (17, 378, 504, 3)
    cams = data.train.cameras
    np.testing.assert_allclose(cams.fx, 3260.5 * 504 / 4032, rtol=1e-4)
    # Forward-facing: every camera looks within 15 degrees of -z, from within a small patch.
    assert np.all(cams.c2w[:, 2, 2] > np.cos(np.radians(15)))
    assert np.abs(cams.c2w[:, :3, 3]).max() < 1.0
    o, d = cams.rays(0)
    np.testing.assert_allclose(o[..., 2], -1.0, atol=1e-5)  # NDC: from the near plane
    assert np.all(d[..., 2] > 0.9)
    assert np.all(np.abs(o[..., :2]) < 1.7)  # inside the NDC box


def _copy(capture, tmp_path):
    dst = tmp_path / "c"
    shutil.copytree(capture, dst)
    return dst


def test_malformed_captures_give_one_line_naming_the_file(capture, tmp_path):
    root = _copy(capture, tmp_path)
    bad = lambda **kw: pytest.raises(UserError, **kw)  # noqa: E731
    arr = np.load(root / "poses_bounds.npy")
    np.save(root / "poses_bounds.npy", arr[:-1])
    with bad(match=r"poses_bounds.npy holds 15 rows but .*images has 16 images"):
        load_dataset(DataConfig(path=root))
    np.save(root / "poses_bounds.npy", arr[:, :15])
    with bad(match=r"poses_bounds.npy: holds an array of shape \(16, 15\), expected \(N, 17\)"):
        load_dataset(DataConfig(path=root))
    np.save(root / "poses_bounds.npy", arr)
    (root / "images").rename(root / "photos")
    with bad(match=r"images_4: no such image folder \(here: no images\* folders\); pick --data.downscale"):
        load_dataset(DataConfig(path=root, downscale=4))
    (root / "photos").rename(root / "images")

    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"][12]["transform_matrix"] = meta["frames"][12]["transform_matrix"][:3]
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"transforms.json frame 12: transform_matrix is 3x4, expected 4x4"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta = json.loads((capture / "transforms.json").read_text())
    meta["k1"] = -0.05
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"transforms.json frame 0: lens distortion \{'k1': -0.05\} is not applied"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    (root / "poses_bounds.npy").unlink()
    (root / "transforms.json").unlink()
    with bad(match=r"no transforms_<split>.json \(Blender\), poses_bounds.npy \(LLFF\) or transforms.json"):
        load_dataset(DataConfig(path=root))


def _write_ply(path, points, binary=True):
    head = f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex {len(points)}\n"
    head += "property float x\nproperty float y\nproperty float z\nproperty uchar red\nelement face 0\n"
    head += "property list uchar int vertex_indices\nend_header\n"
    table = np.zeros(len(points), [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1")])
    table["x"], table["y"], table["z"] = points.T
    body = table.tobytes() if binary else "".join(f"{x} {y} {z} 7\n" for x, y, z in points).encode()
    path.write_bytes(head.encode() + body)


def test_a_point_cloud_sets_the_box_around_the_surfaces(capture, tmp_path):
    """With ply_file_path the box hugs the points (moved and scaled as the poses were), leaving
    out stray points; ascii and binary PLY agree; a truncated one is one line naming it."""
    from tensorf.data.generated import GEOMETRY_BOUNDS
    from tensorf.data.nerfstudio import normalise_poses

    rng = np.random.default_rng(0)
    lo, hi = np.asarray(GEOMETRY_BOUNDS)
    points = np.concatenate([rng.uniform(lo, hi, (2000, 3)), rng.uniform(-30, 30, (10, 3))])  # 0.5% strays
    meta = json.loads((capture / "transforms.json").read_text())
    _, transform, scale = normalise_poses(np.stack([np.asarray(f["transform_matrix"]) for f in meta["frames"]]))
    corners = np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3)
    corners = scale * (corners @ transform[:3, :3].T + transform[:3, 3])
    boxes = []
    for binary in (True, False):
        folder = tmp_path / f"ply_{binary}"
        shutil.copytree(capture, folder)
        _write_ply(folder / "sparse_pc.ply", points, binary)
        (folder / "transforms.json").write_text(json.dumps({**meta, "ply_file_path": "sparse_pc.ply"}))
        boxes.append(np.asarray(load_dataset(DataConfig(path=folder, format="nerfstudio")).scene.aabb))
    np.testing.assert_allclose(boxes[0], boxes[1], atol=1e-5)
    # The geometry's bounds plus the 10% margins, not the strays' (to within the slight tilt the
    # normalisation gives the geometry's box, and the 1% quantiles).
    np.testing.assert_allclose(boxes[0], corners.min(0) + np.outer([-0.1, 1.1], np.ptp(corners, 0)),
                               atol=0.05 * np.ptp(corners, 0).max())
    cameras_box = np.asarray(load_dataset(DataConfig(path=capture, format="nerfstudio")).scene.aabb)
    assert np.prod(boxes[0][1] - boxes[0][0]) < np.prod(cameras_box[1] - cameras_box[0])
    raw = (folder / "sparse_pc.ply").read_bytes()
    _write_ply(folder / "sparse_pc.ply", points, binary=True)
    (folder / "sparse_pc.ply").write_bytes((folder / "sparse_pc.ply").read_bytes()[:-100])
    with pytest.raises(UserError, match="sparse_pc.ply: .*vertices"):
        load_dataset(DataConfig(path=folder, format="nerfstudio"))
    (folder / "sparse_pc.ply").write_bytes(raw.replace(b"ply\n", b"xyz\n", 1))
    with pytest.raises(UserError, match="sparse_pc.ply: not a PLY file"):
        load_dataset(DataConfig(path=folder, format="nerfstudio"))


def test_nerf_samples_ndc_rays_evenly_in_ndc_depth_to_infinity(capture):
    """JaxNeRF's LLFF sampling: the coarse samples of an NDC ray run evenly in NDC z from the near
    plane (-1) to infinity (+1), each ray to its own reach."""
    from tensorf.config import NeRFConfig
    from tensorf.data.rays import view_rays
    from tensorf.models.nerf import NeRF

    data = load_dataset(DataConfig(path=capture, format="llff"))
    rays = view_rays(data.train, 0)
    model = NeRF(NeRFConfig(coarse_samples=9), data.scene)
    t = np.asarray(model.coarse_samples(rays, None))
    z = np.asarray(rays.origins[:, None, 2] + t * rays.directions[:, None, 2])
    np.testing.assert_allclose(z, np.broadcast_to(np.linspace(-1, 1, 9), z.shape), atol=1e-5)
