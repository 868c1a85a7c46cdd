"""What users look at: orbit GIFs, the notebook, the mesh."""

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from tensorf.data.generated import GEOMETRY_BOUNDS

ROOT = Path(__file__).resolve().parents[1]


def test_render_360_gif_frames_size_and_motion(trained_run, tmp_path):
    from render_360 import Render360Args, render_orbit

    cfg, _ = trained_run
    out = render_orbit(
        Render360Args(run_dir=cfg.run_dir, output=tmp_path / "orbit.gif", frames=6, resolution=(24, 20), progress=False)
    )
    frames = iio.imread(out["rgb"], index=None)
    assert frames.shape[:3] == (6, 20, 24)
    diffs = [np.abs(frames[i].astype(int) - frames[i + 1].astype(int)).mean() for i in range(5)]
    assert min(diffs) > 1.0, diffs  # the scene turns
    assert frames[..., :3].std() > 10  # not a blank canvas
    for kind in ("depth", "opacity"):
        assert iio.imread(out[kind], index=None).shape[:3] == (6, 20, 24)


def test_render_360_writes_mp4_when_the_output_names_one(trained_run, tmp_path):
    """--output orbit.mp4 is a video (it was GIF bytes under an .mp4 name), and so are its twins."""
    pytest.importorskip("imageio_ffmpeg")
    from render_360 import Render360Args, render_orbit

    cfg, _ = trained_run
    out = render_orbit(Render360Args(run_dir=cfg.run_dir, output=tmp_path / "orbit.mp4", frames=4, resolution=(32, 32),
                                     opacity=False, progress=False))
    assert sorted(p.name for p in out.values()) == ["orbit.mp4", "orbit_depth.mp4"]
    assert all(p.read_bytes()[4:8] == b"ftyp" for p in out.values())  # ISO media, not a GIF's header
    assert iio.imread(out["rgb"], index=None, extension=".mp4").shape[:3] == (4, 32, 32)


def test_render_360_missing_run_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "render_360.py", "--run-dir", str(tmp_path / "nope")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_notebook_executes(trained_run):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import os

    cfg, _ = trained_run
    nb = nbformat.read(ROOT / "render.ipynb", as_version=4)
    env = {"TENSORF_RUN_DIR": str(cfg.run_dir), "PYTHONPATH": str(ROOT)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3
    assert any("PSNR" in o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_mesh_export_matches_known_geometry(trained_run, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from tensorf.export_mesh import ExportMeshArgs, main

    cfg, _ = trained_run
    path = main(ExportMeshArgs(run_dir=cfg.run_dir, output=tmp_path / "mesh.ply", resolution=48))
    mesh = trimesh.load(path, force="mesh")
    aabb = np.asarray(cfg.data.aabb)
    assert len(mesh.vertices) > 100 and len(mesh.faces) > 100
    assert np.all(mesh.vertices >= aabb[0] - 1e-4) and np.all(mesh.vertices <= aabb[1] + 1e-4)
    # The surfaces' bounds, without the stray floaters a 400-step field may hold (one at y -1.13
    # failed this test on one machine): pieces of at least 2% of the faces, most of the mesh.
    pieces = [m for m in mesh.split(only_watertight=False) if len(m.faces) >= 0.02 * len(mesh.faces)]
    assert sum(len(m.faces) for m in pieces) > 0.75 * len(mesh.faces)
    lo = np.min([m.vertices.min(0) for m in pieces], axis=0)
    hi = np.max([m.vertices.max(0) for m in pieces], axis=0)
    np.testing.assert_allclose(lo, GEOMETRY_BOUNDS[0], atol=0.2)
    np.testing.assert_allclose(hi, GEOMETRY_BOUNDS[1], atol=0.2)
    assert mesh.visual.vertex_colors[:, :3].std() > 5  # textured, not one flat colour


class _AnalyticField:
    """A model stand-in whose density is given in the field's space: export_mesh needs only
    .scene, .density and .color."""

    def __init__(self, scene, inside):
        self.scene, self.inside = scene, inside

    def density(self, params, xyz):
        import jax.numpy as jnp

        return jnp.where(self.inside(xyz), 100.0, 0.0)

    def color(self, params, xyz, viewdirs):
        return 0.5 + 0.0 * xyz


def test_meshes_of_ndc_and_contracted_fields_come_out_in_world_units():
    """A forward-facing run's NDC field and an unbounded run's contracted one are meshed in their
    own space and their vertices taken back to the world: a sphere stays a sphere of its radius."""
    pytest.importorskip("skimage")
    import jax.numpy as jnp

    from tensorf.data.cameras import Ndc
    from tensorf.data.views import Scene
    from tensorf.export_mesh import world_mesh

    centre, radius = np.asarray([0.2, -0.1, -3.0]), 0.5
    sx, sy, near = 1.5, 2.0, 1.0

    def ndc_sphere(y):  # the world sphere, seen in NDC (ndc_to_world in jnp)
        z = 2.0 * near / (y[:, 2] - 1.0)
        world = jnp.stack([-y[:, 0] * z / sx, -y[:, 1] * z / sy, z], -1)
        return jnp.linalg.norm(world - centre, axis=-1) < radius

    ndc = Scene(aabb=((-1.0,) * 3, (1.0,) * 3), near_far=(0.0, 1.0), background=1.0, ndc=True, ndc_scale=(sx, sy))
    verts, faces, _, _ = world_mesh(_AnalyticField(ndc, ndc_sphere), {}, 128, None, 0.005, True, 65536,
                                    ndc=Ndc(near, sx, sy))
    assert len(faces) > 100
    off = np.abs(np.linalg.norm(verts - centre, axis=-1) - radius)
    assert off.max() < 0.1, off.max()  # an NDC cell is 0.07 world units deep at z = -3
    # In NDC the sphere would be a small flattened blob about (0.1, -0.07, 0.33).
    assert np.abs(verts.mean(0) - centre).max() < 0.05

    # Contracted (l2, shell 1): a subject of radius 0.5 at the origin and a backdrop 8 units out.
    def contracted(y):
        r = jnp.linalg.norm(y, axis=-1)
        return (r < 0.5) | (jnp.abs(r - (2.0 - 1.0 / 8.0)) < 0.03)

    unbounded = Scene(aabb=((-2.0,) * 3, (2.0,) * 3), near_far=(0.05, 1e3), background=1.0, contraction="l2")
    field = _AnalyticField(unbounded, contracted)
    verts, faces, _, samples = world_mesh(field, {}, 128, None, 0.005, True, 65536)
    assert samples == 64  # the unit region, half the box: as fine as the field's grid there
    np.testing.assert_allclose(np.linalg.norm(verts, axis=-1), 0.5, atol=0.04)  # the subject alone
    verts, faces, _, _ = world_mesh(field, {}, 128, None, 0.005, False, 65536)
    r = np.linalg.norm(verts, axis=-1)
    subject, backdrop = r < 1, r > 1
    np.testing.assert_allclose(r[subject], 0.5, atol=0.04)
    # The backdrop's shell, 0.06 thick in contracted space and a sample (0.03) either side,
    # spans 5.4 to 15.6 units in the world (uncontracted: all within radius 2).
    assert backdrop.sum() > 100 and r[backdrop].min() > 5.0 and r[backdrop].max() < 16.0
    assert np.isfinite(verts).all() and faces.max() < len(verts)


def test_point_cloud_lies_on_the_scene_surfaces(trained_run, tmp_path):
    """python -m tensorf.export_points: the opaque pixels of the training views, at their depths,
    land on the generated scene's surfaces (its analytic distance), in world units."""
    trimesh = pytest.importorskip("trimesh")
    from tensorf.data.generated import surface_distance
    from tensorf.export_points import ExportPointsArgs, main

    cfg, _ = trained_run
    path = main(ExportPointsArgs(run_dir=cfg.run_dir, output=tmp_path / "points.ply", points=3000, progress=False))
    cloud = trimesh.load(path)
    points = np.asarray(cloud.vertices, np.float64)
    assert len(points) == 3000  # more pixels qualify: a subset of the budget's size
    off = np.abs(surface_distance(points))
    # The field's grid is 34 cells over 2.4 units (0.07 a cell) after 400 steps: median 0.029, 90%
    # within 0.074 (at the weights' mean depth instead of their median: 0.039 and 0.086).
    assert np.median(off) < 0.05 and np.quantile(off, 0.9) < 0.12, (np.median(off), np.quantile(off, 0.9))
    # Points spread over the geometry's bounds fail the bar more than twice over (median 0.13).
    rng = np.random.default_rng(0)
    assert np.median(np.abs(surface_distance(rng.uniform(GEOMETRY_BOUNDS[0], GEOMETRY_BOUNDS[1], (3000, 3))))) > 0.12
    colours = np.asarray(cloud.colors)[:, :3]
    assert colours.std() > 20  # the striped sphere, the checkered slab: not one colour
    assert not np.isin(colours.reshape(-1, 3).tolist(), [[255, 255, 255]]).all(-1).any()  # no white backdrop
    # Normals against the surfaces' outward normals (the analytic distance's gradient), in degrees:
    # median 12.0, 90% within 50.4 and 3.1% facing away after 400 steps (3 cells of 0.07 span the
    # box's edges); on the quick-start run 6.9 and 26.9, where the field's own density gradient
    # (central differences a cell apart) gave 25 and 80. Random normals facing the camera: 60.
    vertex = cloud.metadata["_ply_raw"]["vertex"]["data"]
    normals = np.stack([vertex["nx"], vertex["ny"], vertex["nz"]], -1).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
    e = 1e-4
    true = np.stack([surface_distance(points + e * axis) - surface_distance(points - e * axis) for axis in np.eye(3)], -1)
    true /= np.linalg.norm(true, axis=-1, keepdims=True)
    angle = np.degrees(np.arccos(np.clip(np.sum(normals * true, -1), -1, 1)))
    assert np.median(angle) < 20 and np.quantile(angle, 0.9) < 65 and np.mean(angle > 90) < 0.06, (
        np.median(angle), np.quantile(angle, 0.9), np.mean(angle > 90))


def test_ndc_points_go_back_to_the_world_ray_they_lie_on():
    """A forward-facing camera's NDC ray, at any NDC depth, unprojects to a point on its world ray."""
    from tensorf.data.cameras import Cameras, Ndc, ndc_to_world

    c2w = np.eye(4, dtype=np.float32)
    c2w[:3, 3] = [0.3, -0.2, 0.5]
    ndc = Cameras.centered(c2w[None], 40, 30, focal=35.0, ndc=Ndc(1.0, 35.0 / 20.0, 35.0 / 15.0))
    world = Cameras.centered(c2w[None], 40, 30, focal=35.0)
    o_ndc, d_ndc, _ = ndc.rays(0)
    o, d, _ = world.rays(0)
    for t in (0.1, 0.5, 0.9):
        p = ndc_to_world(o_ndc + t * d_ndc, 35.0 / 20.0, 35.0 / 15.0, 1.0)
        along = np.sum((p - o) * d, axis=-1, keepdims=True)
        assert np.abs(p - (o + along * d)).max() < 1e-4 * (1 + np.abs(along).max())
        assert (along > 0).all()
    # NDC depth t = 0 is the near plane z = -1 (world), whatever the pixel.
    np.testing.assert_allclose(ndc_to_world(o_ndc, 35.0 / 20.0, 35.0 / 15.0, 1.0)[..., 2], -1.0, atol=1e-5)


def test_a_blender_runs_cameras_export_as_a_transforms_json_of_the_same_views(trained_run, tmp_path):
    """A Blender scene's run exports its training and test views as a nerfstudio capture: read
    back, each frame names its PNG, at the pose and focal length of the scene's own json."""
    import json

    from tensorf.data.nerfstudio import read_transforms
    from tensorf.export_cameras import cli

    cfg, _ = trained_run
    cli(["--run-dir", str(cfg.run_dir), "--output", str(tmp_path / "export" / "transforms.json")])
    capture = read_transforms(tmp_path / "export")
    scene = Path(cfg.data.path)
    for split in ("train", "test"):
        meta = json.loads((scene / f"transforms_{split}.json").read_text())
        frames = {f.file.resolve(): f for f in capture.frames}
        for given in meta["frames"]:
            frame = frames[(scene / f"{given['file_path']}.png").resolve()]
            np.testing.assert_allclose(frame.c2w, given["transform_matrix"], atol=1e-6)
            np.testing.assert_allclose(frame.intrinsics[0], 16 / np.tan(meta["camera_angle_x"] / 2), rtol=1e-6)
    assert len(capture.frames) == 24 + 4 and len(capture.splits["test"]) == 4
