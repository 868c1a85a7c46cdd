"""Real-capture formats: LLFF with NDC rays, nerfstudio / instant-ngp transforms.json."""

import dataclasses
import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SHARED_DATA, tiny_config
from tensorf.config import DataConfig
from tensorf.data.cameras import Cameras, Ndc, ndc_rays
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
    cams = Cameras.centered(np.eye(4)[None], 8, 6, 5.0, Ndc.of_camera(1.0, 5.0, 5.0, 4.0, 3.0))
    o, d, _ = cams.rays(0)
    np.testing.assert_allclose(d.reshape(-1, 3), np.tile([0.0, 0.0, 1.0], (48, 1)), atol=1e-6)
    # Pixel centres map to (x + 0.5 - cx) / cx: the image spans NDC [-1, 1] in x and y.
    np.testing.assert_allclose(o[0, :, 0], (np.arange(8) + 0.5 - 4) / 4, atol=1e-6)
    np.testing.assert_allclose(o[:, 0, 1], -(np.arange(6) + 0.5 - 3) / 3, atol=1e-6)


def test_a_runs_ndc_reads_back_from_its_cameras_file_old_or_new():
    """RUN/cameras.json keeps the capture's NDC map; a run written before the map was kept (its
    near plane only) reads back the map its rays were cast through, its cameras' own."""
    cams = Cameras.centered(np.eye(4)[None], 8, 6, 5.0, Ndc(1.0, 1.2, 1.5)).through_pixel_corners()
    assert Cameras.from_json(json.loads(json.dumps(cams.to_json()))).ndc == Ndc(1.0, 1.2, 1.5)
    old = {k: v for k, v in cams.to_json().items() if k != "ndc"} | {"ndc_near": 1.0}
    assert Cameras.from_json(old).ndc == Ndc(1.0, 5.0 / 4.5, 5.0 / 3.5)


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


# llff (NDC) in the README's command; the other two read the same loaders' other branches and
# train the same way (the slow CI line).
@pytest.mark.parametrize("fmt", ["llff", pytest.param("nerfstudio", marks=pytest.mark.slow),
                                 pytest.param("llff-360", marks=pytest.mark.slow),
                                 pytest.param("colmap", marks=pytest.mark.slow)])
def test_captures_train_past_a_threshold_with_no_flags_and_render_their_path(capture, tmp_path, fmt):
    """Forward-facing in LLFF layout (NDC), as transforms.json without points (world rays) and as
    a COLMAP model with points (NDC), and 360 in LLFF layout."""
    import render_360
    from tensorf.data.generated import generate_llff_360
    from tensorf.run import load_config
    from tensorf.training.loop import train

    path = generate_llff_360(tmp_path / "ring", size=32, n=24) if fmt == "llff-360" else capture
    if fmt == "colmap":
        _colmap_of(capture, path := tmp_path / "model", binary=True)
    ndc = fmt in ("llff", "colmap")
    cfg = tiny_config(path, tmp_path / fmt, steps=150, batch_size=512, log_every=50, checkpoint_every=0,
                      final_eval=True, data__format=fmt.removesuffix("-360"), data__aabb=None,
                      model__upsample_steps=(50,), model__filter_rays=not ndc)
    result = train(cfg)
    # 150 tiny steps: ~18-20 dB forward-facing; 16.0 all around, the backdrop painted on the box
    # (untrained: ~7).
    assert result.eval_metrics["psnr"] > (14.5 if fmt == "llff-360" else 17.0), result.eval_metrics
    # TV and L1 auto: the official recipe for 360 captures (TV, no L1), else lego's (L1, no TV).
    model = load_config(tmp_path / fmt).model
    assert (model.tv_weight_density, model.tv_weight_appearance) == ((0.1, 0.01) if fmt == "llff-360" else (0, 0))
    assert (model.l1_weight, model.l1_weight_rest) == ((0, 0) if fmt == "llff-360" else (8e-5, 4e-5))
    saved = load_config(tmp_path / fmt).data
    assert (saved.kind, saved.ndc) == (("360", False) if fmt == "llff-360" else ("forward-facing", ndc))
    assert saved.downscale == 1  # --data.downscale auto, recorded as the factor it chose
    out = render_360.render_orbit(render_360.Render360Args(run_dir=tmp_path / fmt, frames=4, resolution=(8, 8),
                                                           progress=False, depth=False, opacity=False))
    frames = len(iio.imread(out["rgb"]))
    assert frames == (4 if fmt == "llff-360" else 120)  # forward-facing: the spiral; 360: an orbit
    if ndc:
        # The point cloud in the capture's own coordinates (poses_bounds.npy's or the model's: the generated
        # scene's world) lies near the scene's surfaces; in the run's (rescaled and recentred) it
        # does not. After 150 steps the white backdrop is painted opaque at whatever depth, so only
        # the coloured points count: a median 0.18 off against 1.23 (a cell at 32^3 is about 0.08).
        import trimesh

        from tensorf.data.generated import surface_distance
        from tensorf.export_points import ExportPointsArgs, main as export_points

        off = {}
        for frame in ("capture", "run"):
            cloud = trimesh.load(export_points(ExportPointsArgs(run_dir=tmp_path / fmt, output=tmp_path / f"{frame}.ply",
                                                                frame=frame, min_opacity=0.5, progress=False)))
            coloured = (np.asarray(cloud.colors)[:, :3] < 230).any(-1)
            assert coloured.sum() > 1000
            off[frame] = float(np.median(np.abs(surface_distance(np.asarray(cloud.vertices)[coloured]))))
        assert off["capture"] < 0.3 and off["run"] > 0.8, off


@pytest.mark.skipif(not FERN.is_dir(), reason="needs ../shared/data/nerf_llff_data/fern")
def test_lego_cpu_starts_on_fern(tmp_path):
    """lego's field (softplus density) starts empty. In front of LLFF's official black it got no
    gradient, and lego-cpu on fern stayed black (4.8 dB); the loader now puts white behind LLFF
    captures, as behind every posed capture, and the LLFF presets ask for black themselves."""
    from tensorf.presets import LEGO_CPU, LLFF_CPU
    from tensorf.training.loop import train

    assert LLFF_CPU.data.background == 0.0
    cfg = dataclasses.replace(LEGO_CPU, run_dir=tmp_path / "run", steps=60, batch_size=1024, log_every=20, eval_every=0,
                              checkpoint_every=0, final_eval=False, eval_lpips=False, progress=False,
                              data=DataConfig(path=FERN, downscale=8))
    assert train(cfg).train_psnr > 12.0  # measured: 15.8 with white behind, 4.8 with black


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
    o, d, _ = cams.rays(0)
    np.testing.assert_allclose(o[..., 2], -1.0, atol=1e-5)  # NDC: from the near plane
    assert np.all(d[..., 2] > 0.9)
    assert np.all(np.abs(o[..., :2]) < 1.7)  # inside the NDC box


def _copy(capture, tmp_path):
    dst = tmp_path / "c"
    shutil.copytree(capture, dst)
    return dst


def test_an_llff_factor_no_folder_ships_is_read_from_a_finer_one(capture, tmp_path):
    """A capture shipped as images_2/ only (LLFF's scenes ship images_4/ and images_8/) reads at
    factor 4 from it, as from the full-size images/ it came from (to 8-bit rounding)."""
    from tensorf.data.images import write_scaled

    root = _copy(capture, tmp_path)
    names = sorted(p.name for p in (root / "images").iterdir())
    write_scaled(root / "images", names, 2)
    want = load_dataset(DataConfig(path=root, downscale=4, format="llff"))
    shutil.rmtree(root / "images")
    got = load_dataset(DataConfig(path=root, downscale=4, format="llff"))
    assert got.train.images.shape == want.train.images.shape == (14, 8, 8, 3)
    np.testing.assert_allclose(got.train.images, want.train.images, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(got.train.cameras.fx, want.train.cameras.fx)


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
    broken = arr.copy()
    broken[3, 14] = 0.0  # a focal length of zero: rays with no direction
    np.save(root / "poses_bounds.npy", broken)
    with bad(match=r"poses_bounds.npy: row 3 has height, width and focal length \[32.0, 32.0, 0.0\]; they must be positive"):
        load_dataset(DataConfig(path=root))
    broken = arr.copy()
    broken[5, [0, 5, 10]] = 0.0  # the rotation's first column, zero
    np.save(root / "poses_bounds.npy", broken)
    with bad(match=r"poses_bounds.npy: row 5's rotation is degenerate"):
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
    meta["frames"][4]["fl_x"] = 0.0
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"transforms.json image images/image004.png: focal lengths 0, [\d.]+ \(principal point 16, 16\); "
                   r"they must be positive"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta = json.loads((capture / "transforms.json").read_text())
    del meta["fl_x"], meta["fl_y"]
    meta["camera_angle_x"] = 0.0
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"transforms.json frame 0: fl_x, fl_y, cx, cy must be numbers and camera_angle_x / _y angles in \(0, pi\)"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta = json.loads((capture / "transforms.json").read_text())
    pose = np.asarray(meta["frames"][7]["transform_matrix"])
    meta["frames"][7]["transform_matrix"] = np.concatenate([pose[:, :2], pose[:, :1], pose[:, 3:]], axis=1).tolist()
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"transforms.json image images/image007.png: its pose is not finite or its rotation is degenerate"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta["frames"][7]["transform_matrix"] = (pose * [[3], [3], [3], [1]]).tolist()  # scaled: still a camera
    (root / "transforms.json").write_text(json.dumps(meta))
    load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta = json.loads((capture / "transforms.json").read_text())
    meta["camera_model"] = "OMNIDIRECTIONALSTEREO_L"
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"transforms.json frame 0: camera_model OMNIDIRECTIONALSTEREO_L is not supported \(one of PERSPECTIVE"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta.update(camera_model="OPENCV", k4=0.01)
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"frame 0: k4 = 0.01 is a fisheye \(or rational\) term; set camera_model OPENCV_FISHEYE"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta = json.loads((capture / "transforms.json").read_text())
    meta["frames"][5]["w"] = 40  # a frame's own size, wrong
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"image005\.\w+: image is 32x32 at the --data.downscale in force, but .*transforms.json says 40x32"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta = json.loads((capture / "transforms.json").read_text())
    meta["frames"][3]["mask_path"] = "masks/small.png"
    (root / "masks").mkdir()
    iio.imwrite(root / "masks" / "small.png", np.full((8, 8), 255, np.uint8))
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"masks/small.png: mask is 8x8 \(downscale 1: 8x8\), its image 32x32; give it the image's size"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    meta["frames"][3]["mask_path"] = "masks/gone.png"
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"masks/gone.png: mask file is missing; restore it or remove the frame's mask_path"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    iio.imwrite(root / "masks" / "none.png", np.zeros((32, 32), np.uint8))
    meta["frames"][3]["mask_path"] = "masks/none.png"  # a training view: it just adds no ray
    meta["frames"][0]["mask_path"] = "masks/none.png"  # held out (every 8th, from 0)
    (root / "transforms.json").write_text(json.dumps(meta))
    with bad(match=r"the mask of held-out view image000 keeps no pixel, so nothing can judge it"):
        load_dataset(DataConfig(path=root, format="nerfstudio"))
    (root / "poses_bounds.npy").unlink()
    (root / "transforms.json").unlink()
    with bad(match=r"no transforms_<split>.json \(Blender\), poses_bounds.npy \(LLFF\), transforms.json .* sparse/0/ \(COLMAP\), cameras.xml \(Metashape\), reconstruction.json \(OpenSfM, OpenDroneMap\), keyframes/ \(Polycam\) or metadata.json \+ rgb/ \(Record3D\) here; .*images holds \d+ photos without poses: recover them with `python -m tensorf.poses .*images --out CAPTURE`"):
        load_dataset(DataConfig(path=root))
    empty = tmp_path / "empty"
    empty.mkdir()
    with bad(match=r"here; point --data.path at a dataset folder or give --data.format"):
        load_dataset(DataConfig(path=empty))
    (empty / "clip.MOV").write_bytes(b"")
    with bad(match=r"clip.MOV is a video without poses: recover them with `python -m tensorf.poses .*clip.MOV --out CAPTURE`"):
        load_dataset(DataConfig(path=empty))
    with bad(match=r"clip.MOV is a video, and training needs posed images: recover poses with `python -m tensorf.poses"):
        load_dataset(DataConfig(path=empty / "clip.MOV"))
    for inside in ("transforms.json", "images/image003.png"):  # a file of a capture, not its folder
        with bad(match=rf"{inside} is a file of the LLFF dataset {capture}: point --data.path at that folder"):
            load_dataset(DataConfig(path=capture / inside))
    # One folder off: a capture's image folder, or the folder that holds the captures.
    with bad(match=rf"images is a folder of the LLFF dataset {capture}: point --data.path there"):
        load_dataset(DataConfig(path=capture / "images"))
    shelf = tmp_path / "shelf"
    (shelf / "notes").mkdir(parents=True)
    (shelf / "scene").symlink_to(capture)
    with bad(match=rf"its folder scene \(LLFF\) is a dataset: point --data.path at {shelf / 'scene'}"):
        load_dataset(DataConfig(path=shelf))


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
    from tensorf.data.capture import normalise_poses

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
        boxes.append(np.asarray(load_dataset(DataConfig(path=folder, format="nerfstudio", ndc=False)).scene.aabb))
    np.testing.assert_allclose(boxes[0], boxes[1], atol=1e-5)
    # The geometry's bounds plus the 10% margins, not the strays' (to within the slight tilt the
    # normalisation gives the geometry's box, and the 1% quantiles).
    np.testing.assert_allclose(boxes[0], corners.min(0) + np.outer([-0.1, 1.1], np.ptp(corners, 0)),
                               atol=0.05 * np.ptp(corners, 0).max())
    cameras_box = np.asarray(load_dataset(DataConfig(path=capture, format="nerfstudio", ndc=False)).scene.aabb)
    assert np.prod(boxes[0][1] - boxes[0][0]) < np.prod(cameras_box[1] - cameras_box[0])
    raw = (folder / "sparse_pc.ply").read_bytes()
    _write_ply(folder / "sparse_pc.ply", points, binary=True)
    (folder / "sparse_pc.ply").write_bytes((folder / "sparse_pc.ply").read_bytes()[:-100])
    with pytest.raises(UserError, match="sparse_pc.ply: .*vertices"):
        load_dataset(DataConfig(path=folder, format="nerfstudio"))
    (folder / "sparse_pc.ply").write_bytes(raw.replace(b"ply\n", b"xyz\n", 1))
    with pytest.raises(UserError, match="sparse_pc.ply: not a PLY file"):
        load_dataset(DataConfig(path=folder, format="nerfstudio"))


def test_a_forward_facing_capture_with_points_takes_ndc_rays(capture, tmp_path, capsys):
    """A forward-facing capture whose sparse points give its depths (a transforms.json with its
    ply; a COLMAP model the same way) takes LLFF's treatment: NDC rays from the near plane in the
    frame of the cameras' average pose, the near plane in front of every surface the points show,
    the surfaces inside NDC's box, and the file's own frame kept (to_source) for exports. Without
    points, or asked for world rays, it keeps the box; NDC asked where it cannot hold is one line."""
    from tensorf.data.generated import GEOMETRY_BOUNDS

    points = np.random.default_rng(0).uniform(*np.asarray(GEOMETRY_BOUNDS), (2000, 3))
    root = _copy(capture, tmp_path)
    meta = json.loads((root / "transforms.json").read_text())
    _write_ply(root / "sparse_pc.ply", points)
    (root / "transforms.json").write_text(json.dumps({**meta, "ply_file_path": "sparse_pc.ply"}))
    data = load_dataset(DataConfig(path=root, format="nerfstudio"))
    llff = load_dataset(DataConfig(path=capture, format="llff"))
    cams = data.train.cameras
    assert data.scene.ndc and data.scene.aabb == llff.scene.aabb and cams.ndc == llff.train.cameras.ndc
    # The official LLFF recipe takes such a capture as it is, not only LLFF's poses_bounds.npy.
    from tensorf.presets import LLFF_CPU

    (root / "poses_bounds.npy").unlink()
    official = load_dataset(dataclasses.replace(LLFF_CPU.data, path=root, downscale=1))
    assert official.format == "nerfstudio" and official.scene.ndc and official.scene.background == 0.0
    assert data.scene.ndc_scale == cams.ndc.scale and data.render_path.shape == (120, 4, 4)  # NeRF's spiral
    np.testing.assert_allclose(cams.rays(0)[0][..., 2], -1.0, atol=1e-5)
    # LLFF's frame: the cameras look down -z from around the origin, at the scale the depths set
    # (the generated poses_bounds.npy puts its near bounds 0.2 in front of the geometry, where the
    # points start: its scale is 8% larger).
    assert np.all(cams.c2w[:, 2, 2] > np.cos(np.radians(15)))
    spread = np.ptp(cams.c2w[:, :3, 3], 0).max() / np.ptp(llff.train.cameras.c2w[:, :3, 3], 0).max()
    assert 0.88 < spread < 0.98, spread
    world = points @ np.linalg.inv(data.to_source)[:3, :3].T + np.linalg.inv(data.to_source)[:3, 3]
    assert world[:, 2].max() < -cams.ndc.near  # every surface beyond the near plane
    inside = _project(world, cams.ndc.sx, cams.ndc.sy, cams.ndc.near)
    assert np.all((inside > np.asarray(data.scene.aabb[0])) & (inside < np.asarray(data.scene.aabb[1])))
    for world_rays in (DataConfig(path=capture, format="nerfstudio"), DataConfig(path=root, format="nerfstudio", ndc=False),
                       DataConfig(path=root, format="nerfstudio", contraction="linf")):  # the unbounded presets'
        assert not load_dataset(world_rays).scene.ndc and load_dataset(world_rays).train.cameras.ndc is None
    # Cameras that walk towards the scene all look one way (forward-facing), but the front ones
    # stand past the near plane that the nearest surface sets for the rear ones: no NDC holds them.
    frames = [{**f, "transform_matrix": (np.asarray(f["transform_matrix"]) - np.outer([0, 0, walk, 0], [0, 0, 0, 1])).tolist()}
              for f, walk in zip(meta["frames"], np.linspace(0.0, 2.0, len(meta["frames"])))]
    (root / "transforms.json").write_text(json.dumps({**meta, "frames": frames, "ply_file_path": "sparse_pc.ply"}))
    wide = load_dataset(DataConfig(path=root, format="nerfstudio"))
    assert wide.kind.kind == "forward-facing" and not wide.scene.ndc
    assert "no one NDC holds its cameras" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"transforms.json: --data.ndc cannot hold for this capture: its sparse points.* are missing"):
        load_dataset(DataConfig(path=capture, format="nerfstudio", ndc=True))
    with pytest.raises(UserError, match=r"transforms.json: --data.ndc is for forward-facing captures, and this one is read as a 360"):
        load_dataset(DataConfig(path=root, format="nerfstudio", ndc=True, kind="360"))


def test_a_bounded_box_holds_a_surface_at_an_images_edge_that_few_points_show(capture, tmp_path):
    """A surface filling a strip down one view's edge, shown by fewer points than the 1% that the
    subject's box trims as strays, still lies in the box: a ray that leaves the box before its
    surface would see the flat background (fox with COLMAP's poses: 13.9 dB on such a view). A
    far one down the other edge does not stretch the box past twice the subject's."""
    from tensorf.data.capture import normalise_poses
    from tensorf.data.generated import GEOMETRY_BOUNDS

    rng = np.random.default_rng(0)
    meta = json.loads((capture / "transforms.json").read_text())
    subject = rng.uniform(*np.asarray(GEOMETRY_BOUNDS), (2000, 3))
    # 6 cells down the left edge of view 0, 3 points each (0.9% of the points), at the subject's depth.
    pose = np.asarray(meta["frames"][0]["transform_matrix"])
    cell = meta["w"] / 16
    u = np.repeat(np.linspace(0.2, 0.8, 3)[None], 6, 0).ravel() * cell
    v = (np.repeat(np.arange(5, 11), 3) + 0.5) * meta["h"] / 16
    depth = np.linalg.norm(pose[:3, 3])

    def strip_at(u, depth):
        local = np.stack([(u - meta["cx"]) / meta["fl_x"], -(v - meta["cy"]) / meta["fl_y"], -np.ones_like(u)], -1)
        return depth * local @ pose[:3, :3].T + pose[:3, 3]

    strip, far = strip_at(u, depth), strip_at(meta["w"] - u, 20 * depth)
    root = _copy(capture, tmp_path)
    _write_ply(root / "sparse_pc.ply", np.concatenate([subject, strip, far]))
    (root / "transforms.json").write_text(json.dumps({**meta, "ply_file_path": "sparse_pc.ply"}))
    box = np.asarray(load_dataset(DataConfig(path=root, format="nerfstudio", ndc=False)).scene.aabb)
    _, transform, scale = normalise_poses(np.stack([np.asarray(f["transform_matrix"]) for f in meta["frames"]]))
    strip, subject = (scale * (x @ transform[:3, :3].T + transform[:3, 3]) for x in (strip, subject))
    assert np.all((strip > box[0]) & (strip < box[1])), (box, strip.min(0), strip.max(0))
    assert np.all(box[1] - box[0] <= 2 * 1.2 * np.ptp(subject, 0) + 1e-6), (box, np.ptp(subject, 0))


def test_a_wide_lens_shows_the_box_the_surfaces_at_its_edges():
    """Through a fisheye (100 degrees across, 130 at the corners) a wall 65-70 degrees off the
    axis fills a strip down the image's left edge. A pinhole of the same focal length would put
    it outside the image: the box must project the points through the lens to keep it."""
    import math

    from tensorf.data import lens
    from tensorf.data.generated import GEOMETRY_BOUNDS, look_at
    from tensorf.data.points import box_seen

    size = 32
    focal = 0.5 * size / math.tan(math.radians(50))
    k = np.array([[focal, focal, size / 2, size / 2, size, size]])
    pose = look_at(np.array([2.2, 0.0, 0.8]))
    subject = np.random.default_rng(0).uniform(*np.asarray(GEOMETRY_BOUNDS), (2000, 3))
    u = np.repeat(np.linspace(0.2, 0.8, 3)[None], 6, 0).ravel() * size / 16  # 6 cells, 3 points each
    v = (np.repeat(np.arange(5, 11), 3) + 0.5) * size / 16
    x, y, z = lens.undistorted_directions((u - size / 2) / focal, (v - size / 2) / focal, np.zeros(6), "fisheye", xp=np)
    assert np.all(np.hypot(x, y) / z > size / 2 / focal)  # beyond a pinhole's image edge
    toward = np.stack([x, -y, -z], -1) / np.linalg.norm(np.stack([x, y, z], -1), axis=-1, keepdims=True)
    strip = toward @ pose[:3, :3].T + pose[:3, 3]
    points = np.concatenate([subject, strip])
    inside = lambda box: np.all((strip > box[0]) & (strip < box[1]))  # noqa: E731
    assert inside(np.asarray(box_seen(points, pose[None], k, "fisheye", np.zeros((1, 6)))))
    assert not inside(np.asarray(box_seen(points, pose[None], k)))  # the lens ignored: the strip is lost


def _with_passers_by(root, tmp_path):
    """Two copies of the generated ring `root`, where a dark square (a passer-by) covers 14% of
    every photo, somewhere else in each: one whose frames name masks of the squares
    (nerfstudio's mask_path), one without."""
    rng = np.random.default_rng(0)
    masked, plain = tmp_path / "masked", tmp_path / "plain"
    shutil.copytree(root, masked)
    (masked / "masks").mkdir()
    meta = json.loads((masked / "transforms.json").read_text())
    for frame in meta["frames"]:
        image = iio.imread(masked / frame["file_path"])
        keep = np.full(image.shape[:2], 255, np.uint8)
        y, x = rng.integers(0, image.shape[0] - 12, 2)
        image[y : y + 12, x : x + 12, :3] = 20
        keep[y : y + 12, x : x + 12] = 0
        iio.imwrite(masked / frame["file_path"], image)
        frame["mask_path"] = f"masks/{Path(frame['file_path']).name}"
        iio.imwrite(masked / frame["mask_path"], keep)
    shutil.copytree(masked, plain)
    (masked / "transforms.json").write_text(json.dumps(meta))
    return masked, plain


def test_masked_pixels_are_left_out_of_the_ray_pool(tmp_path):
    """A frame's mask_path drops the pixels its mask zeroes from the training rays; a capture
    without masks keeps every pixel."""
    from tensorf.data.generated import generate_lens_capture
    from tensorf.data.rays import RayPool

    masked, plain = _with_passers_by(generate_lens_capture(tmp_path / "clean", size=32, n=24), tmp_path)
    data = load_dataset(DataConfig(path=masked))
    pool = RayPool.from_views(data.train)
    kept = np.flatnonzero(data.train.masks.reshape(-1))
    assert data.train.masks.mean() < 0.9 and np.array_equal(np.asarray(pool.ids), kept)
    assert load_dataset(DataConfig(path=plain)).train.masks is None


@pytest.mark.slow  # two trainings, about a minute and a half on 2 cores
def test_masked_pixels_are_neither_trained_on_nor_judged(tmp_path):
    """Trained with its masks, a capture whose photos each hold a passer-by renders the scene
    without them, where the same photos unmasked leave dark haze; the metrics judge only the
    pixels the masks keep."""
    from tensorf.data.generated import generate_lens_capture
    from tensorf.metrics import psnr
    from tensorf.training.loop import train

    clean = generate_lens_capture(tmp_path / "clean", size=32, n=24)
    masked, plain = _with_passers_by(clean, tmp_path)
    frames = json.loads((masked / "transforms.json").read_text())["frames"][::8]  # the held-out views
    read = lambda path: iio.imread(path)[..., :3] / 255.0  # noqa: E731
    reported, renders = {}, {}
    for name, root in (("masked", masked), ("plain", plain)):
        cfg = tiny_config(root, tmp_path / f"run-{name}", steps=150, batch_size=512, checkpoint_every=0,
                          final_eval=True, data__aabb=None, model__upsample_steps=(50,))
        reported[name] = train(cfg).eval_metrics["psnr"]
        test = tmp_path / f"run-{name}" / "eval" / "test"
        renders[name] = [read(test / f"{Path(f['file_path']).stem}.png") for f in frames]
    # Judged on the pixels its masks keep (the renders read back as 8-bit PNGs).
    keeps = [iio.imread(masked / f["mask_path"]) > 0 for f in frames]
    judged = np.mean([psnr(r[k], read(masked / f["file_path"])[k])
                      for r, k, f in zip(renders["masked"], keeps, frames)])
    assert abs(reported["masked"] - judged) < 0.05, (reported, judged)
    # Against the views without passers-by, 150 tiny steps: 16.5 dB against 13.7 (dark haze).
    clean_psnr = {name: np.mean([psnr(r, read(clean / f["file_path"])) for r, f in zip(renders[name], frames)])
                  for name in renders}
    assert clean_psnr["masked"] > clean_psnr["plain"] + 2.0, clean_psnr


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


@pytest.mark.parametrize("centers", [True, False])
def test_nerf_llff_colours_ndc_rays_by_their_world_directions(capture, centers):
    """nerf-llff (JaxNeRF's LLFF models): the colour branch sees each NDC ray's world-space
    direction, recovered from the NDC ray with the capture's projection, which the run records."""
    from tensorf.config import NeRFConfig, TrainConfig
    from tensorf.config import from_json as config_from_json
    from tensorf.config import to_json as config_to_json
    from tensorf.data.rays import view_rays
    from tensorf.models.nerf import NeRF
    from tensorf.presets import PRESETS
    from tensorf.run import resolved_config, scene_of

    preset = PRESETS["nerf-llff"][1]
    assert preset.model.world_viewdirs and preset.model.density_noise == 1.0 and preset.batching == "all_images"
    assert preset.optim.lr_delay_steps == 0 and not preset.data.pixel_centers and preset.data.downscale == 4
    data = load_dataset(DataConfig(path=capture, format="llff", pixel_centers=centers))
    world = load_dataset(DataConfig(path=capture, format="llff", ndc=False, pixel_centers=centers))
    cfg = resolved_config(TrainConfig(data=DataConfig(path=capture)), data.scene)
    scene = scene_of(config_from_json(config_to_json(cfg)))  # as a restored run sees it
    assert scene == data.scene and scene.ndc_scale is not None
    model = NeRF(NeRFConfig(world_viewdirs=True), scene)
    for i in (0, 5):
        got = np.asarray(model._viewdirs(view_rays(data.train, i)))
        # The same camera's world rays (LLFF's loader normalises poses identically with and without NDC).
        np.testing.assert_allclose(got, view_rays(world.train, i).directions, atol=2e-5)
    ndc_dirs = view_rays(data.train, 0).directions
    plain = NeRF(NeRFConfig(), scene)
    np.testing.assert_array_equal(np.asarray(plain._viewdirs(view_rays(data.train, 0))), ndc_dirs)
    assert not np.allclose(got, ndc_dirs, atol=1e-3)  # the NDC directions differ: the test can tell them apart


def _colmap_of(capture, root, binary, lens_=("OPENCV", (0.0, 0.0, 0.0, 0.0))):
    """The capture's transforms.json rewritten as a COLMAP model under root/sparse/0 (one shared
    camera), with its images in root/images."""
    from tensorf.data import colmap

    meta = json.loads((capture / "transforms.json").read_text())
    shutil.copytree(capture / "images", root / "images")
    name, extra = lens_
    cam = colmap.Camera(name, meta["w"], meta["h"], (meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], *extra))
    images = {i + 1: colmap.colmap_image(np.asarray(f["transform_matrix"]), 1, Path(f["file_path"]).name)
              for i, f in enumerate(meta["frames"])}
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.9, 0.9, (500, 3)) * [1, 1, 0.8]
    colmap.write_model(root / "sparse" / "0", colmap.Model({1: cam}, images, points), binary=binary)
    return points


@pytest.mark.parametrize("binary", [True, False], ids=["bin", "txt"])
def test_a_colmap_model_loads_to_the_cameras_of_its_transforms_json(capture, tmp_path, binary):
    """A COLMAP model (binary or text) and the transforms.json of the same capture (nerfstudio's
    colmap_to_json conventions) give the same cameras, lens, images and masks (COLMAP's
    masks/<image>.png, nerfstudio's mask_path); the points set the box."""
    root = tmp_path / "colmap"
    dist = (-0.03, 0.01, 0.002, -0.001)  # OPENCV k1, k2, p1, p2
    points = _colmap_of(capture, root, binary, ("OPENCV", dist))
    meta = json.loads((capture / "transforms.json").read_text())
    meta.update(k1=dist[0], k2=dist[1], p1=dist[2], p2=dist[3])
    ns_root = tmp_path / "ns"
    shutil.copytree(capture, ns_root)
    pts = points[:, [1, 0, 2]] * [1, 1, -1]  # the points in nerfstudio's world frame
    _write_ply(ns_root / "sparse_pc.ply", pts.astype(np.float32))
    for r in (root, ns_root):
        (r / "masks").mkdir()
    for k, frame in enumerate(meta["frames"][:5]):  # the others have none
        keep = np.full((meta["h"], meta["w"]), 255, np.uint8)
        keep[k : k + 6, 2 * k : 2 * k + 9] = 0
        name = Path(frame["file_path"]).name
        iio.imwrite(root / "masks" / f"{name}.png", keep)
        iio.imwrite(ns_root / "masks" / name, keep)
        frame["mask_path"] = f"masks/{name}"
    (ns_root / "transforms.json").write_text(json.dumps({**meta, "ply_file_path": "sparse_pc.ply"}))
    (ns_root / "poses_bounds.npy").unlink()
    a = load_dataset(DataConfig(path=root))
    b = load_dataset(DataConfig(path=ns_root))
    assert a.format == "colmap" and b.format == "nerfstudio"
    assert a.train.names == b.train.names and a.eval.names == b.eval.names
    for va, vb in ((a.train, b.train), (a.eval, b.eval)):
        np.testing.assert_array_equal(va.images, vb.images)
        np.testing.assert_array_equal(va.masks, vb.masks)
        ca, cb = va.cameras, vb.cameras
        assert ca.model == cb.model == "opencv"
        np.testing.assert_allclose(ca.c2w, cb.c2w, atol=1e-5)
        for k in ("fx", "fy", "cx", "cy", "distortion"):
            np.testing.assert_allclose(getattr(ca, k), getattr(cb, k), atol=1e-9)
    np.testing.assert_allclose(a.scene.aabb, b.scene.aabb, atol=1e-4)
    assert 0 < 1 - a.train.masks.mean() < 0.05 and (~a.eval.masks).any()  # frame 0 is held out
    # nerfstudio's ns-process-data layout: the model in colmap/sparse/0 beside images/ (it was
    # "no transforms_<split>.json ... here").
    (root / "colmap").mkdir()
    (root / "sparse").rename(root / "colmap" / "sparse")
    c = load_dataset(DataConfig(path=root))
    assert c.format == "colmap" and c.train.names == a.train.names
    np.testing.assert_array_equal(c.train.cameras.c2w, a.train.cameras.c2w)


def test_colmap_models_outside_the_lens_models_and_damaged_files_are_one_line(capture, tmp_path):
    from tensorf.data import colmap

    root = tmp_path / "c"
    _colmap_of(capture, root, True, ("FOV", (0.9,)))
    with pytest.raises(UserError, match=r"camera 1: camera model FOV is not supported \(supported: SIMPLE_PINHOLE"):
        load_dataset(DataConfig(path=root))
    _colmap_of(capture, tmp_path / "d", True, ("FULL_OPENCV", (0.01, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0)))
    with pytest.raises(UserError, match="FULL_OPENCV with non-zero rational terms"):
        load_dataset(DataConfig(path=tmp_path / "d"))
    model = colmap.read_model(root / "sparse" / "0")  # every reader's cameras are checked where they meet
    cam = model.cameras[1]
    flat = dataclasses.replace(cam, model="PINHOLE", params=(0.0, *cam.params[1:4]))
    colmap.write_model(root / "sparse" / "0", dataclasses.replace(model, cameras={1: flat}), binary=True)
    with pytest.raises(UserError, match=r"images.bin image image000.png: focal lengths 0, [\d.]+ \(principal point"):
        load_dataset(DataConfig(path=root))
    for inside in ("sparse/0", "sparse"):  # --data.path one or two folders too deep
        with pytest.raises(UserError, match=rf"{inside}(: no images/ beside this model; it is part of| is a folder of) "
                                            rf"the COLMAP (capture|dataset) {root}"):
            load_dataset(DataConfig(path=root / inside))
    model = tmp_path / "d" / "sparse" / "0"
    (model / "images.bin").write_bytes((model / "images.bin").read_bytes()[:-40])
    with pytest.raises(UserError, match=r"images.bin: damaged or truncated"):
        colmap.read_colmap(tmp_path / "d")


@pytest.mark.parametrize("binary", [True, False], ids=["bin", "txt"])
def test_of_several_colmap_models_the_largest_is_read_with_one_warning(capture, tmp_path, capsys, binary):
    """COLMAP writes the parts of a scene it could not join as sparse/0, sparse/1, ..., and not
    always the largest first: the one that registered the most images is read, and a warning
    names them all."""
    from tensorf.data import colmap

    root = tmp_path / "c"
    _colmap_of(capture, root, binary)
    whole = colmap.read_model(root / "sparse" / "0")
    few = dict(list(whole.images.items())[:3])
    shutil.move(root / "sparse" / "0", root / "sparse" / "1")
    colmap.write_model(root / "sparse" / "0", dataclasses.replace(whole, images=few), binary=binary)
    (root / "sparse" / "2").mkdir()  # not a model: left alone
    data = load_dataset(DataConfig(path=root))
    assert len(data.train.images) + len(data.eval.images) == 16
    err = capsys.readouterr().err
    assert err.count("warning:") == 1, err
    assert "2 models (0/: 3 images, 1/: 16 images)" in err and "reading the largest, 1/" in err, err


def test_frames_without_images_are_dropped_with_one_warning(capture, tmp_path, capsys):
    root = _copy(capture, tmp_path)
    (root / "poses_bounds.npy").unlink()
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"] += [{**meta["frames"][3], "file_path": f"images/gone{i}.png"} for i in range(3)]
    (root / "transforms.json").write_text(json.dumps(meta))
    data = load_dataset(DataConfig(path=root))
    assert len(data.train.images) + len(data.eval.images) == 16
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "3 of 19 frames have no image file (first: " in err and "gone0.png" in err
    for f in (root / "images").iterdir():
        f.unlink()
    with pytest.raises(UserError, match=r"transforms.json: none of its 19 frames' images exists"):
        load_dataset(DataConfig(path=root))


def test_file_paths_written_elsewhere_find_their_images(capture, tmp_path):
    """A transforms.json from Windows (backslashes), one naming .jpg for images converted to PNG,
    one without extensions, one in another letter case: each used to stop at "none of its frames'
    images exists"; each reads the capture's own images."""
    root = _copy(capture, tmp_path)
    (root / "poses_bounds.npy").unlink()
    meta = json.loads((root / "transforms.json").read_text())
    want = load_dataset(DataConfig(path=root))
    edits = {"backslashes": lambda p: p.replace("/", "\\"), "another extension": lambda p: p[:-4] + ".jpg",
             "no extension": lambda p: p[:-4], "another case": lambda p: p.upper()}
    for name, edit in edits.items():
        frames = [{**f, "file_path": edit(f["file_path"])} for f in meta["frames"]]
        assert not (root / frames[0]["file_path"]).exists(), name
        (root / "transforms.json").write_text(json.dumps({**meta, "frames": frames}))
        got = load_dataset(DataConfig(path=root))
        assert np.array_equal(got.train.images, want.train.images) and np.array_equal(got.eval.images, want.eval.images), name


def test_macos_appledouble_twins_are_not_photos(capture, tmp_path):
    """A capture copied from a Mac to an exFAT drive gets "._image000.png" beside each photo (the
    Finder's metadata, no pixels): LLFF read twice as many images as poses and stopped, and
    tensorf.poses failed on the first twin. Both leave them out now."""
    from tensorf.poses import _photos

    root = _copy(capture, tmp_path)
    (root / "transforms.json").unlink()
    want = load_dataset(DataConfig(path=root))
    for photo in list((root / "images").iterdir()):
        (root / "images" / f"._{photo.name}").write_bytes(b"\x00\x05\x16\x07 Mac OS X")
    got = load_dataset(DataConfig(path=root))
    assert np.array_equal(got.train.images, want.train.images) and np.array_equal(got.eval.images, want.eval.images)
    names, _, _ = _photos(root / "images", tmp_path / "copied")
    assert len(names) == 16 and not any(n.startswith(".") for n in names)


def test_360_and_forward_facing_captures_are_told_apart_from_their_cameras(capture, tmp_path):
    """The generated scene as a 360 LLFF capture (cameras all around) and as a forward-facing one:
    each read the right way with no flags (world rays and a fitted box and an orbit, or NDC and the
    spiral), and --data.kind overrides the decision."""
    from tensorf.data.generated import generate_llff_360

    ring = generate_llff_360(tmp_path / "ring", size=16, n=24)
    a = load_dataset(DataConfig(path=ring))
    assert a.kind.kind == "360" and not a.scene.ndc and a.render_path is None
    assert a.kind.spread_deg > 60
    lo, hi = np.asarray(a.scene.aabb)
    # Around what the cameras look at, not around the cameras (normalised to |x| <= 1).
    cams = a.train.cameras.c2w[:, :3, 3]
    assert np.all(hi - lo < 1.5) and not np.any(np.all((cams > lo) & (cams < hi), axis=-1))
    b = load_dataset(DataConfig(path=capture))
    assert b.kind.kind == "forward-facing" and b.scene.ndc and b.render_path is not None
    assert b.kind.spread_deg < 15
    forced = load_dataset(DataConfig(path=ring, kind="forward-facing"))
    assert forced.scene.ndc and forced.kind.forced and "as given" in forced.kind.describe()


def test_an_orbit_sweeps_only_the_arc_the_cameras_cover():
    """Cameras on a 100-degree arc (a capture from one side, like the fox on its wall): the orbit
    stays within their azimuths; cameras all the way round: a full turn."""
    from tensorf.data.orbit import look_at, orbit_from_cameras, orbit_poses

    def ring(degrees):
        return np.stack([look_at(np.array([3 * np.cos(a), 3 * np.sin(a), 1.0]), np.zeros(3), np.array([0, 0, 1.0]))
                         for a in np.radians(degrees)])

    side = orbit_from_cameras(ring(np.linspace(10, 110, 12)))
    path = orbit_poses(side, 24)[:, :3, 3] - side.center
    az = np.degrees(np.arctan2(path[:, 1], path[:, 0]))
    assert side.arc is not None and az.min() > 5 and az.max() < 115 and np.ptp(az) > 90
    full = orbit_from_cameras(ring(np.arange(0, 360, 30)))
    assert full.arc is None
    path = orbit_poses(full, 24)[:, :3, 3] - full.center
    assert np.ptp(np.degrees(np.arctan2(path[:, 1], path[:, 0]))) > 330


def _two_sizes(tmp_path):
    """A phone turned for some photos: the generated lens capture cropped to 24x32 (portrait) or
    32x24 (landscape) per frame, each frame its own w, h, cx, cy. Held out: views 0 and 16
    portrait, 8 landscape. Returns (root, transforms.json's contents)."""
    from tensorf.data.generated import generate_lens_capture

    root = generate_lens_capture(tmp_path / "mixed", size=32, n=24)
    meta = json.loads((root / "transforms.json").read_text())
    for k, frame in enumerate(meta["frames"]):  # the central 24 columns (portrait) or 24 rows (landscape)
        path = root / frame["file_path"]
        image = iio.imread(path)
        portrait = (k // 8) % 2 == 0
        iio.imwrite(path, image[:, 4:28] if portrait else image[4:28])
        frame.update(w=24 if portrait else 32, h=32 if portrait else 24, cx=12.0 if portrait else 16.0,
                     cy=16.0 if portrait else 12.0)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root, meta


def test_photos_of_two_sizes_share_one_pool_each_view_its_own_pixels(tmp_path):
    """Views of 24x32 and 32x24 in one transforms.json share one padded array whose masks keep
    each view's own pixels: only those are drawn as rays, each its own pixel's."""
    from tensorf.data.rays import RayPool

    root, _ = _two_sizes(tmp_path)
    data = load_dataset(DataConfig(path=root))
    assert "24x32 and 32x24" in data.describe(root)
    train_views = data.train
    assert train_views.images.shape[1:3] == (32, 32)
    for i in range(len(train_views.names)):
        h, w = train_views.size(i)
        assert {(h, w)} <= {(32, 24), (24, 32)} and train_views.masks[i].sum() == h * w
        assert train_views.masks[i, :h, :w].all()
    # The pool holds each view's own pixels, one view after another: the padding takes no memory,
    # and every ray is its own pixel's.
    pool = jax.device_put(RayPool.from_views(train_views))
    own = [train_views.image(i)[0] for i in range(len(train_views.names))]
    held = np.asarray(pool.colors) / np.float32(pool.levels)
    np.testing.assert_array_equal(held, np.concatenate([im.reshape(-1, 3) for im in own]))
    assert int(pool.count) == sum(im.shape[0] * im.shape[1] for im in own) < train_views.masks.size
    for i in (0, 7, 20):  # portrait, landscape (frames 9-15), the last portrait
        first, last = int(pool.starts[i]), int(pool.starts[i + 1])
        rays, colors = pool.rays(pool.ids[first:last])
        o, d, _ = train_views.cameras.rays(i)
        np.testing.assert_allclose(np.asarray(rays.directions), d.reshape(-1, 3), atol=2e-7)
        np.testing.assert_allclose(np.asarray(colors), own[i].reshape(-1, 3), rtol=0, atol=1e-7)  # XLA's / 255
    kept = pool.filtered(lambda params, rays: jnp.arange(rays.origins.shape[0]) % 2 == 1, {}, chunk=64)
    ids, starts, offsets = (np.asarray(a) for a in (kept.ids, kept.starts, pool.offsets))
    assert starts[-1] == int(kept.count) == int(pool.count) // 2
    for v in range(len(own)):  # each view's rays in play still lie within its own pixels
        in_play = ids[starts[v]:starts[v + 1]]
        assert (in_play >= offsets[v]).all() and (in_play < offsets[v + 1]).all()
    with pytest.raises(UserError, match="one image size"):  # a turntable's camera stands still
        load_dataset(DataConfig(path=root, turntable="yes"))


@pytest.mark.slow  # a 200-step training, about a minute on 2 cores
def test_photos_of_two_sizes_train_together_each_judged_at_its_own_size(tmp_path):
    """Trained together, each held-out view of the two sizes renders and is judged at its own size."""
    from tensorf.metrics import psnr
    from tensorf.training.loop import train

    root, meta = _two_sizes(tmp_path)
    cfg = tiny_config(root, tmp_path / "run", steps=200, batch_size=512, checkpoint_every=0, final_eval=True,
                      data__aabb=None, model__upsample_steps=(50,))
    reported = train(cfg).eval_metrics["psnr"]
    held_out = meta["frames"][::8]
    judged = []
    for frame in held_out:
        render = iio.imread(tmp_path / "run" / "eval" / "test" / f"{Path(frame['file_path']).stem}.png") / 255.0
        truth = iio.imread(root / frame["file_path"])[..., :3] / 255.0
        assert render.shape == truth.shape == (frame["h"], frame["w"], 3)
        judged.append(psnr(render, truth))
    assert abs(reported - np.mean(judged)) < 0.05, (reported, judged)
    assert reported > 15.0, reported  # measured: 16.8 (the same capture uncropped, same run: 17.8)


def test_large_photos_are_read_at_the_size_auto_picks(tmp_path, monkeypatch, capsys):
    """--data.downscale auto (the default): images over images.AUTO_MAX_SIDE along their longer
    side are read at the smallest power of two that brings them within it (nerfstudio's rule),
    pixels area-averaged and focal lengths scaled, the factor printed; a capture's images_<d>/
    (tensorf.poses writes them) are read in their place."""
    from tensorf.data import images
    from tensorf.data.generated import generate_lens_capture

    # The rule at phones' sizes: 12 MP, 1080p video, both ways round, 50 MP; already small enough.
    assert images.auto_downscale([(4032, 3024)], "p") == 4
    assert images.auto_downscale([(1920, 1080), (1080, 1920)], "p") == 2
    assert images.auto_downscale([(8160, 6120)], "p") == 8
    assert images.auto_downscale([(1600, 1200)], "p") == images.auto_downscale([(800, 800)], "p") == 1
    # 4 would not divide 4030x3022 (area averaging needs whole blocks): 2 and a warning.
    assert images.auto_downscale([(4030, 3022)], "p") == 2
    assert "would read images of 4030x3022 at factor 4" in capsys.readouterr().err

    # Small stand-ins: 64x64 images against a limit of 20 px are read at factor 4, as 4032x3024
    # photos are against 1600.
    monkeypatch.setattr(images, "AUTO_MAX_SIDE", 20)
    root = generate_lens_capture(tmp_path / "big", size=64, n=16)
    meta = json.loads((root / "transforms.json").read_text())
    data = load_dataset(DataConfig(path=root))
    assert data.downscale == 4 and data.train.images.shape[1:3] == (16, 16)
    assert "16x16 (downscale 4)" in data.describe(root)
    first = iio.imread(root / meta["frames"][1]["file_path"])[..., :3] / 255.0  # frame 0 is held out
    np.testing.assert_allclose(data.train.images[0], first.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3)), atol=1e-6)
    np.testing.assert_allclose(data.train.cameras.fx, meta["fl_x"] / 4)
    assert load_dataset(DataConfig(path=root, downscale=1)).train.images.shape[1:3] == (64, 64)

    names = [Path(f["file_path"]).name for f in meta["frames"]]
    twins = images.write_scaled(root / "images", names, 4)
    assert twins == root / "images_4" and iio.imread(twins / names[1]).shape == (16, 16, 3)
    np.testing.assert_allclose(load_dataset(DataConfig(path=root)).train.images[0], data.train.images[0],
                               atol=0.5 / 255 + 1e-6)  # 8-bit twins
    iio.imwrite(twins / names[1], np.full((16, 16, 3), 77, np.uint8))
    assert np.all(load_dataset(DataConfig(path=root)).train.images[0] == np.float32(77 / 255))


def test_novel_views_take_the_most_common_camera_and_landscape_on_a_tie():
    """render_360's orbit and spiral cameras (Cameras.with_poses): a capture whose first photo was
    taken turned still orbits at its usual size; half and half orbits in landscape."""
    def cams(sizes):
        n = len(sizes)
        w, h = np.asarray(sizes).T
        return Cameras(np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), np.arange(n) + 30.0, np.arange(n) + 30.0,
                       w / 2, h / 2, w, h)

    orbit = cams([(24, 32), (32, 24), (32, 24)]).with_poses(np.tile(np.eye(4), (5, 1, 1)))
    assert len(orbit) == 5 and {(int(w), int(h)) for w, h in zip(orbit.width, orbit.height)} == {(32, 24)}
    assert set(orbit.fx.tolist()) == {31.0}  # the first camera of that size
    tie = cams([(24, 32), (32, 24)]).with_poses(np.eye(4)[None])
    assert (int(tie.width[0]), int(tie.height[0]), float(tie.cx[0])) == (32, 24, 16.0)


def test_the_printed_training_command_keeps_small_photos_near_their_size():
    """tensorf.poses ends with the command that trains the capture: lego-cpu's own factor 4 for
    photos that stay 400 px or longer at it (fox's 1080x1920: 480; a phone's 12 MP: 1008, from
    images_4/), else the largest factor that keeps them so: fern's 504 px photos train at 504,
    not 126."""
    from tensorf.poses import training_hint

    hint = lambda *sizes: training_hint(Path("CAP"), list(sizes))  # noqa: E731
    assert hint((1080, 1920)) == hint((4032, 3024)) == "train it: python train_lego.py --preset lego-cpu --data.path CAP"
    assert hint((504, 378)).endswith("--data.path CAP --data.downscale 1")
    assert hint((1000, 750)).endswith("--data.downscale 2")
    assert not hint((500, 500), (1920, 1080)).endswith("--data.downscale 1")  # the largest photos decide


def test_photos_stored_sideways_are_turned_upright_and_their_masks_with_them(tmp_path):
    """tensorf.poses' copy of the photos (no COLMAP needed for this part): a photo with an EXIF
    orientation is written as a viewer shows it, the tag dropped and the rest of the EXIF kept;
    a mask drawn on the stored pixels (the stored size) turns with its photo, one drawn on the
    photo as seen (the upright size) and the masks of upright photos are copied as they are."""
    from PIL import Image, ImageOps

    from tensorf.poses import _masks, _photos

    rng = np.random.default_rng(0)
    src, masks = tmp_path / "photos", tmp_path / "masks"
    src.mkdir()
    masks.mkdir()
    stored = {n: rng.integers(0, 255, (8, 12, 3), dtype=np.uint8) for n in ("a.png", "b.png", "c.png")}
    for n, orientation in (("a.png", 6), ("b.png", 8), ("c.png", 1)):
        im = Image.fromarray(stored[n])
        exif = im.getexif()
        exif[0x010F] = "PhoneMaker"
        exif[0x0112] = orientation
        im.save(src / n, exif=exif.tobytes())
    drawn = {"a.png": rng.integers(0, 2, (8, 12), dtype=np.uint8) * 255,  # on a's stored pixels
             "b.png": rng.integers(0, 2, (12, 8), dtype=np.uint8) * 255,  # on b as seen
             "c.png": rng.integers(0, 2, (8, 12), dtype=np.uint8) * 255}
    for n, m in drawn.items():
        iio.imwrite(masks / f"{n}.png", m)

    names, turned, originals = _photos(src, tmp_path / "capture" / "images")
    assert names == ["a.png", "b.png", "c.png"] and turned == {"a.png": 6, "b.png": 8}
    for n in names:
        with Image.open(src / n) as original, Image.open(tmp_path / "capture" / "images" / n) as copy:
            np.testing.assert_array_equal(np.asarray(copy), np.asarray(ImageOps.exif_transpose(original)))
            assert copy.getexif().get(0x0112, 1) == 1 and copy.getexif()[0x010F] == "PhoneMaker"
    assert Image.open(tmp_path / "capture" / "images" / "a.png").size == (8, 12)  # seen portrait

    _masks(masks, tmp_path / "capture" / "masks", names, turned, originals)
    got = {n: iio.imread(tmp_path / "capture" / "masks" / f"{n}.png") for n in names}
    np.testing.assert_array_equal(got["a.png"], np.rot90(drawn["a.png"], k=-1))  # 6: 90 degrees clockwise
    np.testing.assert_array_equal(got["b.png"], drawn["b.png"])
    np.testing.assert_array_equal(got["c.png"], drawn["c.png"])


def test_exif_orientations_turn_pixels_as_viewers_do_and_cameras_cast_the_same_rays():
    """For all eight EXIF orientations: upright (arrays) and upright_image (PIL) turn pixels as
    PIL's exif_transpose does, and turn_camera gives the upright view's camera: each shown pixel
    casts the ray of the stored pixel it came from, through an OpenCV and a fisheye lens."""
    import io

    from PIL import Image, ImageOps

    from tensorf.data.cameras import pixel_rays
    from tensorf.data.orientation import ORIENTATION, turn_camera, upright, upright_image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = q * np.sign(np.linalg.det(q)), (1.0, 2.0, 3.0)
    w, h = 7, 5
    intrinsics = (6.0, 6.5, 3.3, 2.4, w, h)
    ys, xs = np.mgrid[0:h, 0:w]
    for o in range(1, 9):
        im = Image.fromarray(pixels)
        exif = im.getexif()
        exif[ORIENTATION] = o
        buf = io.BytesIO()
        im.save(buf, format="PNG", exif=exif.tobytes())
        shown = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
        np.testing.assert_array_equal(upright(pixels, o), shown)
        np.testing.assert_array_equal(np.asarray(upright_image(Image.fromarray(pixels), o)), shown)
        came_from = upright(np.stack([xs, ys], axis=-1), o)  # each shown pixel's stored (x, y)
        lenses = (("opencv", (0.1, -0.05, 0.01, 0.0, 0.02, -0.03)), ("fisheye", (0.1, -0.05, 0.01, 0.002, 0, 0)))
        for model, dist in lenses:
            c2w_up, k_up, dist_up = turn_camera(o, c2w, intrinsics, dist)
            assert k_up[4:] == (came_from.shape[1], came_from.shape[0])
            sy, sx = np.mgrid[0:k_up[5], 0:k_up[4]]
            _, want, _ = pixel_rays(c2w, *intrinsics[:4], came_from[..., 0], came_from[..., 1], None,
                                    np.float32(dist), model)
            _, got, _ = pixel_rays(c2w_up, *k_up[:4], sx, sy, None, np.float32(dist_up), model)
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, err_msg=f"{o} {model}")
            assert np.linalg.det(c2w_up[:3, :3]) == pytest.approx(1.0 if o in (1, 3, 6, 8) else -1.0)


def test_posed_photos_stored_sideways_load_upright_with_their_cameras(capture, tmp_path, capsys):
    """A transforms.json (or COLMAP) capture whose photos a phone stored sideways with an EXIF
    orientation, posed on the stored pixels as COLMAP poses them, loads as the upright capture:
    the same images, the same cameras (lens terms included), a mask drawn on the stored pixels
    turned with its photo; a photo whose frame was posed on the upright view (a tool that obeyed
    the tag) has only its pixels turned. One line says so, and no warning."""
    from PIL import Image

    from tensorf.data.orientation import turn_camera, upright

    root = _copy(capture, tmp_path)
    (root / "poses_bounds.npy").unlink()
    meta = json.loads((root / "transforms.json").read_text())
    # A wider-than-tall lens with an off-centre principal point and distortion: every term turns.
    meta.update(h=24, fl_y=meta["fl_x"] * 1.1, cx=17.2, cy=11.3, k1=0.05, k2=-0.01, p1=0.01, p2=-0.02)
    for fr in meta["frames"]:
        img = iio.imread(root / fr["file_path"])
        iio.imwrite(root / fr["file_path"], img[:24])
    (root / "transforms.json").write_text(json.dumps(meta))
    before = load_dataset(DataConfig(path=root))
    capsys.readouterr()

    inverse = {6: 8, 8: 6, 3: 3}
    drawn = np.random.default_rng(1).random((24, 32)) > 0.3  # frame 1's mask, as seen upright
    (root / "masks").mkdir()
    iio.imwrite(root / "masks" / "m1.png", upright(drawn, inverse[6]).astype(np.uint8) * 255)
    for i, o, posed_stored in ((1, 6, True), (5, 8, True), (9, 3, True), (13, 6, False)):
        fr = meta["frames"][i]
        img = iio.imread(root / fr["file_path"])
        im = Image.fromarray(np.ascontiguousarray(upright(img, inverse[o])))
        exif = im.getexif()
        exif[0x0112] = o
        im.save(root / fr["file_path"], exif=exif.tobytes())
        if posed_stored:  # the camera of the stored pixels, as COLMAP would have found it
            k = (meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], meta["w"], meta["h"])
            dist = tuple(meta.get(n, 0.0) for n in ("k1", "k2", "k3", "k4", "p1", "p2"))
            c2w, k, dist = turn_camera(inverse[o], np.asarray(fr["transform_matrix"]), k, dist)
            fr.update(transform_matrix=c2w.tolist(), fl_x=k[0], fl_y=k[1], cx=k[2], cy=k[3], w=k[4], h=k[5],
                      **dict(zip(("k1", "k2", "k3", "k4", "p1", "p2"), dist)))
    meta["frames"][1]["mask_path"] = "masks/m1.png"
    (root / "transforms.json").write_text(json.dumps(meta))
    after = load_dataset(DataConfig(path=root))
    out, err = capsys.readouterr()
    assert "4 of 16 images are stored sideways with an EXIF orientation; turned upright with their cameras" in out
    assert "warning" not in err, err
    np.testing.assert_array_equal(after.train.images, before.train.images)
    for key in ("c2w", "fx", "fy", "cx", "cy", "distortion"):
        np.testing.assert_allclose(getattr(after.train.cameras, key), getattr(before.train.cameras, key), atol=1e-5,
                                   err_msg=key)
    np.testing.assert_array_equal(after.train.cameras.width, before.train.cameras.width)
    np.testing.assert_array_equal(after.train.masks[0], drawn)  # frame 1 is the first training view
    assert after.train.masks[1:].all()


def test_each_format_knows_the_way_back_to_its_files_coordinates(capture, tmp_path):
    """Dataset.to_source takes the training cameras back to where the capture file put them
    (exports are written there: they overlay the capture's own points), for transforms.json,
    a COLMAP model (whose axes the reader turns), poses_bounds.npy forward-facing (rescaled and
    recentred) and 360; and RUN/dataparser_transforms.json holds it in nerfstudio's form."""
    from tensorf.config import DataConfig
    from tensorf.data import colmap
    from tensorf.data.dataset import load_dataset
    from tensorf.data.generated import generate_llff_360
    from tensorf.run import load_to_source, to_capture_frame, write_world

    def from_poses_bounds(root):
        m = np.load(root / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)
        return m[:, :, 3], -m[:, :, 2]  # centres, viewing directions (LLFF's third axis points back)

    def from_transforms(root):
        c2w = np.asarray([f["transform_matrix"] for f in json.loads((root / "transforms.json").read_text())["frames"]])
        return c2w[:, :3, 3], -c2w[:, :3, 2]

    def from_colmap(root):
        images = colmap.read_model(root / "sparse" / "0").images.values()
        rot = [colmap.qvec_to_rotation(im.qvec) for im in images]
        return (np.stack([-r.T @ np.asarray(im.tvec) for r, im in zip(rot, images)]),
                np.stack([r.T @ [0.0, 0.0, 1.0] for r in rot]))

    _colmap_of(capture, tmp_path / "colmap", binary=True)
    ring = generate_llff_360(tmp_path / "ring", size=16, n=12)
    cases = [(capture, "llff", from_poses_bounds), (capture, "nerfstudio", from_transforms),
             (tmp_path / "colmap", "colmap", from_colmap), (ring, "llff", from_poses_bounds)]
    for root, fmt, source in cases:
        data = load_dataset(DataConfig(path=root, format=fmt))
        centres, forward = source(Path(root))
        c2w = np.concatenate([data.train.cameras.c2w, data.eval.cameras.c2w]).astype(np.float64)
        assert np.abs(c2w[:, :3, 3] - centres[: len(c2w)]).max() > 1e-2 or fmt == "nerfstudio"  # a change to undo
        back, _ = to_capture_frame(data.to_source, c2w[:, :3, 3])
        nearest = np.argmin(np.linalg.norm(back[:, None] - centres[None], axis=-1), axis=1)
        scene = np.abs(centres).max()
        np.testing.assert_allclose(back, centres[nearest], atol=1e-5 * scene, err_msg=f"{root.name} {fmt}")
        _, looks = to_capture_frame(data.to_source, back, -c2w[:, :3, 2])
        np.testing.assert_allclose(looks / np.linalg.norm(looks, axis=-1, keepdims=True), forward[nearest], atol=1e-5)
        (tmp_path / "run").mkdir(exist_ok=True)
        write_world(tmp_path / "run", data.to_source)
        np.testing.assert_allclose(load_to_source(tmp_path / "run"), data.to_source, atol=1e-9)
        # nerfstudio's reading of the file: x_run = scale * (transform @ [x; 1]).
        body = json.loads((tmp_path / "run" / "dataparser_transforms.json").read_text())
        ns = body["scale"] * (centres[nearest] @ np.asarray(body["transform"])[:, :3].T + np.asarray(body["transform"])[:, 3])
        np.testing.assert_allclose(ns, c2w[:, :3, 3], atol=1e-5)


def test_a_refined_runs_exports_undo_the_cameras_common_drift(tmp_path):
    """With --camera-opt the cameras (and the field fitted to them) may drift together; exports in
    the capture's frame take that drift out before the file's similarity."""
    from scipy.spatial.transform import Rotation

    from tensorf.data.cameras import Cameras
    from tensorf.data.generated import camera_poses
    from tensorf.run import field_to_capture, write_cameras, write_world

    given = Cameras.centered(np.stack(camera_poses(8, seed=1)), 16, 16, focal=20.0)
    drift = np.eye(4)
    drift[:3, :3], drift[:3, 3] = Rotation.from_rotvec([0.02, -0.01, 0.03]).as_matrix(), [0.05, 0.0, -0.02]
    to_source = np.diag([2.0, 2.0, 2.0, 1.0])
    to_source[:3, 3] = [1.0, 2.0, 3.0]
    write_cameras(tmp_path, given)
    write_world(tmp_path, to_source)
    assert np.allclose(field_to_capture(tmp_path), to_source)  # not refined: the file's similarity alone
    write_cameras(tmp_path, dataclasses.replace(given, c2w=(drift @ given.c2w).astype(np.float32)),
                  name="cameras_refined.json")
    point = np.array([0.3, -0.2, 0.1])  # where the drifted field holds what stands at drift^-1 @ point
    expected = to_source @ np.linalg.inv(drift) @ np.append(point, 1.0)
    np.testing.assert_allclose(field_to_capture(tmp_path) @ np.append(point, 1.0), expected, atol=1e-5)


def _colmap_poses(root: Path) -> dict[str, np.ndarray]:
    """Each image's camera-to-world pose (4, 4) in the COLMAP model's world, OpenGL axes."""
    from tensorf.data import colmap

    poses = {}
    for im in colmap.read_model(root / "sparse" / "0").images.values():
        r = colmap.qvec_to_rotation(im.qvec)
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = r.T, -r.T @ np.asarray(im.tvec)
        c2w[:3, 1:3] *= -1  # OpenCV's camera axes (y down, z forward) -> OpenGL's
        poses[im.name] = c2w
    return poses


def test_exported_cameras_are_the_capture_files_own_and_read_back_to_the_runs(capture, tmp_path):
    """tensorf.export_cameras writes every view of a run as the capture file has it: the COLMAP
    model's poses in its own world, its lens, intrinsics at the photos' size (the run read them at
    half) and the same held-out views; a run pointed at the file reads the same cameras."""
    from tensorf.export_cameras import cli
    from tensorf.training.loop import train

    dist = (-0.03, 0.01, 0.002, -0.001)
    _colmap_of(capture, tmp_path / "colmap", binary=True, lens_=("OPENCV", dist))
    run = tmp_path / "run"
    # World rays (the capture is forward-facing): read back with other points, NDC's frame would
    # be another (test_a_forward_facing_capture_with_points_takes_ndc_rays covers its export).
    train(tiny_config(tmp_path / "colmap", run, steps=1, checkpoint_every=0, data__aabb=None, data__downscale=2,
                      data__ndc=False))
    cli(["--run-dir", str(run)])
    body = json.loads((run / "transforms.json").read_text())
    poses = _colmap_poses(tmp_path / "colmap")
    assert len(body["frames"]) == len(poses) == 16
    for frame in body["frames"]:
        np.testing.assert_allclose(frame["transform_matrix"], poses[Path(frame["file_path"]).name], atol=1e-6)
    assert (body["camera_model"], body["w"], body["h"], body["k1"], body["p2"]) == ("OPENCV", 32, 32, dist[0], dist[3])

    recorded = json.loads((run / "cameras.json").read_text())
    again = load_dataset(DataConfig(path=run, downscale=2, ndc=False))  # the format found from the folder
    for split, views in (("train", recorded), ("eval", recorded["eval"])):
        cams = getattr(again, split).cameras
        for key in ("fx", "fy", "cx", "cy", "width", "height", "distortion"):
            np.testing.assert_allclose(getattr(cams, key), views[key], atol=1e-9, err_msg=f"{split} {key}")
        assert [str(f.resolve()) for f in getattr(again, split).files] == views["files"]
        # Read back, the poses are normalised again (up to a turn about the up axis, as the
        # file's world is COLMAP's): the same cameras relative to each other.
        a, b = np.asarray(views["c2w"], np.float64), cams.c2w.astype(np.float64)
        rel_a, rel_b = np.linalg.inv(a[0]) @ a, np.linalg.inv(b[0]) @ b
        np.testing.assert_allclose(rel_b[:, :3, :3], rel_a[:, :3, :3], atol=1e-5)
        scale = np.linalg.norm(rel_b[:, :3, 3], axis=-1).max() / np.linalg.norm(rel_a[:, :3, 3], axis=-1).max()
        np.testing.assert_allclose(rel_b[:, :3, 3], scale * rel_a[:, :3, 3], atol=1e-5)

    cli(["--run-dir", str(run), "--frame", "run", "--output", str(tmp_path / "run_frame.json")])
    frames = {Path(f["file_path"]).name: f["transform_matrix"] for f in
              json.loads((tmp_path / "run_frame.json").read_text())["frames"]}
    np.testing.assert_allclose([frames[Path(f).name] for f in recorded["files"]], recorded["c2w"], atol=1e-6)

    # As a COLMAP scene, with the run's points (here three, written as export_points writes them):
    # the model's own poses and camera back, the points in the same frame, and read as a capture
    # the run's cameras again, in the same order and split.
    from tensorf.data import colmap
    from tensorf.export_mesh import write_in_frame
    from tensorf.run import load_to_source, to_capture_frame

    points = np.array([[0.1, 0.2, 0.3], [0.0, -0.5, 0.2], [0.4, 0.0, -0.1]])
    colours = np.array([[255, 0, 0], [0, 255, 0], [10, 20, 30]], np.uint8)
    write_in_frame(run, "capture", None, "points.ply", points, None, colours)
    cli(["--run-dir", str(run), "--format", "colmap"])
    model = colmap.read_model(run / "colmap" / "sparse" / "0")
    assert list(model.cameras.values()) == [colmap.Camera("OPENCV", 32, 32, tuple(
        json.loads((capture / "transforms.json").read_text())[k] for k in ("fl_x", "fl_y", "cx", "cy")) + dist)]
    for im in model.images.values():
        c2w = np.linalg.inv(colmap.WORLD) @ colmap.opengl_c2w(im)  # in the model's own world
        np.testing.assert_allclose(c2w, poses[im.name], atol=1e-6)
        assert (run / "colmap" / "images" / im.name).resolve() == (tmp_path / "colmap" / "images" / im.name).resolve()
    np.testing.assert_allclose(model.points, to_capture_frame(load_to_source(run), points)[0], atol=1e-5)
    np.testing.assert_array_equal(model.colors, colours)
    again = load_dataset(DataConfig(path=run / "colmap", downscale=2, ndc=False))
    for split, views in (("train", recorded), ("eval", recorded["eval"])):
        np.testing.assert_allclose(getattr(again, split).cameras.c2w, views["c2w"], atol=1e-5)


def test_a_refined_runs_exported_cameras_leave_out_the_common_drift(tmp_path, capsys):
    """With --camera-opt, the exported training cameras are the refined ones. In the capture's
    frame the drift they share is taken out (as for the points and the mesh), so cameras that
    only drifted come back as given, rigid, with the held-out views as given; in the run's frame
    the held-out views move with the drift, as the field sees them. A run that cast rays through
    pixel corners (NeRF's presets) exports the capture's principal points, not its own."""
    from scipy.spatial.transform import Rotation

    from tensorf.data.generated import camera_poses
    from tensorf.data.views import Views
    from tensorf.config import TrainConfig
    from tensorf.export_cameras import ExportCamerasArgs, main
    from tensorf.run import write_cameras, write_config, write_world

    poses = np.stack(camera_poses(10, seed=2))
    given = Cameras.centered(poses[:8], 16, 16, 20.0).through_pixel_corners()
    held = Cameras.centered(poses[8:], 16, 16, 20.0).through_pixel_corners()
    files = [tmp_path / f"v{i}.png" for i in range(10)]
    for f in files:
        iio.imwrite(f, np.zeros((32, 32, 3), np.uint8))  # the photos at twice the size trained
    drift = np.eye(4)
    drift[:3, :3], drift[:3, 3] = Rotation.from_rotvec([0.02, -0.01, 0.03]).as_matrix(), [0.05, 0.0, -0.02]
    to_source = np.diag([2.0, 2.0, 2.0, 1.0])
    to_source[:3, :3] = 2.0 * Rotation.from_rotvec([0.0, 0.0, 0.5]).as_matrix()
    to_source[:3, 3] = [1.0, 2.0, 3.0]
    write_config(TrainConfig(run_dir=tmp_path, data=DataConfig(path=tmp_path, pixel_centers=False)))
    write_cameras(tmp_path, given, files=files[:8],
                  held_out=Views(np.zeros((2, 16, 16, 3)), held, ("v8", "v9"), files=tuple(files[8:])))
    write_cameras(tmp_path, dataclasses.replace(given, c2w=(drift @ given.c2w).astype(np.float32)),
                  name="cameras_refined.json")
    write_world(tmp_path, to_source)

    def exported(frame: str) -> np.ndarray:
        out = main(ExportCamerasArgs(run_dir=tmp_path, frame=frame, output=tmp_path / f"{frame}.json"))
        body = json.loads(out.read_text())
        assert (body["fl_x"], body["cx"], body["w"]) == (40.0, 16.0, 32)
        return np.asarray([f["transform_matrix"] for f in body["frames"]])

    np.testing.assert_allclose(exported("capture"), to_source @ poses @ np.diag([0.5, 0.5, 0.5, 1.0]), atol=1e-5)
    assert "8 training views (as refined) and 2 test views; the capture's coordinates" in capsys.readouterr().out
    np.testing.assert_allclose(exported("run"), drift @ poses, atol=1e-5)

    # A point cloud exported in the other frame would not overlay these cameras.
    from tensorf.export_mesh import write_in_frame

    ply, _ = write_in_frame(tmp_path, "run", None, "points.ply", np.zeros((2, 3)), None, np.zeros((2, 3), np.uint8))
    with pytest.raises(UserError, match="points.ply was exported with --frame run; export the cameras with --frame run"):
        main(ExportCamerasArgs(run_dir=tmp_path, format="colmap", points=ply))
    main(ExportCamerasArgs(run_dir=tmp_path, format="colmap"))  # RUN/points.ply found, in the other frame: left out
    assert "points.ply was exported with --frame run, not capture: points3D left empty" in capsys.readouterr().err


def test_an_r8_lens_term_is_left_out_of_an_exported_transforms_json_that_then_reads_back(tmp_path, capsys):
    """Metashape's r^8 term (k4 on an OPENCV lens) has no place in nerfstudio's OPENCV model, whose
    readers refuse it: the export leaves it out, says so, and the file reads back."""
    from tensorf.data.generated import camera_poses
    from tensorf.data.nerfstudio import read_transforms
    from tensorf.export_cameras import PosedViews, transforms_json

    poses = np.stack(camera_poses(3, seed=3))
    dist = np.tile([-0.05, 0.01, 0.0, 0.002, 0.001, 0.0], (3, 1))
    cams = dataclasses.replace(Cameras.centered(poses, 16, 16, 20.0), model="opencv", distortion=dist)
    files = [tmp_path / f"v{i}.png" for i in range(3)]
    for f in files:
        iio.imwrite(f, np.zeros((16, 16, 3), np.uint8))
    body = transforms_json(PosedViews(cams, files), None, "test", tmp_path, corners=False)
    assert (body["k1"], body["k4"], body["p1"]) == (-0.05, 0.0, 0.001)
    assert "r^8 term (k4, Metashape's)" in capsys.readouterr().err
    (tmp_path / "transforms.json").write_text(json.dumps(body))
    assert [f.distortion for f in read_transforms(tmp_path).frames] == [(-0.05, 0.01, 0.0, 0.0, 0.001, 0.0)] * 3
