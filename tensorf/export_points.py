"""Export a trained run's surfaces as a coloured point cloud (PLY), in world units.

    python -m tensorf.export_points --run-dir RUN [--output RUN/points.ply] [--points 1000000]

Each training camera's pixels are rendered; a pixel whose ray the field makes opaque (opacity at
least --min-opacity) gives the point at its median depth, with its rendered colour (nerfstudio's
`ns-export pointcloud` does the same from its training cameras). Unlike the mesh (marching cubes
on the field's own grid), the points are in the world frame whatever the field's space: a
forward-facing run's NDC depth and a contracted run's rays are taken back to world units.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from tensorf import command
from tensorf.data.cameras import Cameras, ndc_to_world
from tensorf.data.rays import Rays
from tensorf.errors import UserError
from tensorf.export_mesh import write_in_frame
from tensorf.models.base import trained_box
from tensorf.parallel import all_devices
from tensorf.render import render_rays_chunked
from tensorf.run import load_cameras, restore_run


@dataclasses.dataclass(frozen=True)
class ExportPointsArgs:
    """Coloured point cloud of a trained run's surfaces, from its training cameras."""

    run_dir: Path
    """Run directory written by train_lego.py."""
    output: Path | None = None
    """PLY file to write (default RUN/points.ply)."""
    points: int = 1_000_000
    """Most points written: a random subset (fixed seed) when more pixels qualify."""
    min_opacity: float = 0.95
    """Keep a pixel's point only where the field is at least this opaque along its ray (lower it to
    keep more of thin or hazy surfaces, at the cost of points floating between two depths)."""
    normals: bool = True
    """Write each point's surface normal (nx, ny, nz; fitted to its neighbours, facing the camera
    that saw it), which Poisson surface reconstruction (Open3D, MeshLab) needs."""
    downscale: int = 1
    """Render the training cameras at 1/downscale of their size (fewer, faster points)."""
    crop: bool = True
    """Keep only points where the field resolves the scene: inside the trained box (a bounded
    scene), inside the unit region contraction leaves alone (an unbounded one); forward-facing
    runs keep every point in front of their cameras. --no-crop keeps a contracted run's far
    background too."""
    frame: Literal["capture", "run"] = "capture"
    """Coordinates written: the capture's own (the COLMAP model's, the Metashape chunk's, the
    transforms.json's or poses_bounds.npy's world, as RUN/dataparser_transforms.json maps them),
    where they overlay the capture's sparse points and other tools' reconstructions; or the
    run's (normalised: what the viewer and camera paths use)."""
    step: int | None = None
    """Checkpoint step (default: latest)."""
    best: bool = False
    """Use the checkpoint --keep-best kept (the best val PSNR) instead of --step's."""
    chunk: int = 8192
    """Rays rendered per chunk (bounds memory)."""
    progress: bool = True
    """Show a progress bar."""


def surface_points(model, params, cameras: Cameras, min_opacity: float, chunk: int, mesh=None,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points (P, 3) float64 in world units, colours (P, 3) uint8, views (P,) int: the camera
    each came from) of every camera's pixels whose rays the field makes at least min_opacity opaque."""
    points, colours, views = [], [], []
    for i in tqdm(range(len(cameras)), disable=not progress, unit="view", desc="export_points"):
        o, d, r = cameras.rays(i)
        out = render_rays_chunked(model, params, Rays(origins=o, directions=d, radii=r), chunk, mesh)
        keep = np.asarray(out.opacity) >= min_opacity
        # The median of the ray's weights, not their mean: a pixel on an edge, half on a surface
        # and half on the one behind it, lands on one of them instead of in the air between.
        depth = np.asarray(out.median_depth, np.float64)[keep]
        at = o[keep].astype(np.float64) + depth[:, None] * d[keep].astype(np.float64)
        if cameras.ndc is not None:
            at = ndc_to_world(at, cameras.ndc.sx, cameras.ndc.sy, cameras.ndc.near)
        points.append(at)
        colours.append(np.round(np.clip(np.asarray(out.rgb)[keep], 0, 1) * 255).astype(np.uint8))
        views.append(np.full(len(at), i, np.int32))
    return np.concatenate(points), np.concatenate(colours), np.concatenate(views)


def point_normals(points: np.ndarray, eyes: np.ndarray, radius: float, neighbours: int = 64,
                  chunk: int = 65536) -> np.ndarray:
    """Unit normals (P, 3) of a point cloud (P, 3), each facing its camera centre (eyes (P, 3)):
    the direction of least spread of the nearby points, as Open3D's estimate_normals (which
    nerfstudio's `ns-export pointcloud` calls) finds them. The neighbourhood is the `neighbours`
    nearest within `radius` (at least the nearest 8, however far), among a seeded subset of the
    cloud thinned so that about `neighbours` points lie within `radius` of a point: a dense cloud
    (a million points) would otherwise fit its planes to its points' scatter within a fraction
    of a grid cell. Better here than the field's density gradient, which wavers across the few
    cells where a surface's density rises (tests/test_viewers.py: 25 degrees off the true
    normals, median, against 7)."""
    from scipy.spatial import cKDTree  # a dependency of jax's own

    points = np.asarray(points, np.float64)
    rng = np.random.default_rng(0)
    support, tree = points, cKDTree(points)
    if np.isfinite(radius) and len(points) > neighbours:
        probe = points[rng.choice(len(points), min(2000, len(points)), replace=False)]
        within = np.median(tree.query_ball_point(probe, radius, return_length=True))
        if within > neighbours:
            support = points[rng.random(len(points)) < neighbours / within]
            tree = cKDTree(support)
    k = min(neighbours, len(support))
    normals = np.empty_like(points)
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk]
        dist, idx = tree.query(p, k, workers=-1)
        dist, idx = dist.reshape(len(p), k), idx.reshape(len(p), k)
        weight = ((dist <= radius) | (np.arange(k) < 8)).astype(np.float64)[..., None]
        near = support[idx]
        mean = (weight * near).sum(1) / weight.sum(1)
        spread = (near - mean[:, None]) * weight
        _, vectors = np.linalg.eigh(np.einsum("pki,pkj->pij", spread, spread))
        n = vectors[:, :, 0]  # eigh sorts ascending: the least spread
        normals[start:start + chunk] = np.where(np.sum(n * (eyes[start:start + chunk] - p), -1, keepdims=True) < 0, -n, n)
    return normals.astype(np.float32)


def crop_region(model, params) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) world box the field resolves, or None (no crop: a forward-facing run, whose NDC
    box reaches to infinity)."""
    scene = model.scene
    if scene.ndc:
        return None
    if scene.contraction:
        return -np.ones(3), np.ones(3)  # the unit region (for l2, the cube around its ball)
    box = trained_box(model, params).astype(np.float64)
    return box[0], box[1]


def normal_radius(model, params, meta) -> float:
    """World distance within which a point's neighbours give its normal: 3 cells of the field's
    grid (256 along the box for NeRF), wider than the points' own scatter off the surface (about
    half a cell), narrow enough to keep edges; infinite for NDC, whose cells grow with depth (the
    nearest neighbours alone decide)."""
    if model.scene.ndc:
        return float("inf")
    box = trained_box(model, params)
    cells = max(meta["model_state"].get("resolution") or [256])
    return 3.0 * float((box[1] - box[0]).max()) / cells


def main(args: ExportPointsArgs) -> Path:
    cfg, model, params, meta = restore_run(args.run_dir, args.step, args.best)
    refined = Path(args.run_dir) / "cameras_refined.json"  # the poses the field was fitted to, when refined
    cameras = load_cameras(args.run_dir, cfg, refined.name if refined.is_file() else "cameras.json")
    if args.downscale > 1:
        cameras = cameras.resized(np.maximum(cameras.width // args.downscale, 1),
                                  np.maximum(cameras.height // args.downscale, 1))
    points, colours, views = surface_points(model, params, cameras, args.min_opacity, args.chunk, all_devices(),
                                            args.progress)
    seen = len(points)
    region = crop_region(model, params) if args.crop else None
    keep = np.isfinite(points).all(-1)
    if region is not None:
        keep &= ((points >= region[0]) & (points <= region[1])).all(-1)
    points, colours, views = points[keep], colours[keep], views[keep]
    if len(points) == 0:
        raise UserError(f"no pixel of the {len(cameras)} training views reaches opacity {args.min_opacity} inside the "
                        "field's region; train longer, lower --min-opacity or pass --no-crop")
    if len(points) > args.points:
        pick = np.sort(np.random.default_rng(0).choice(len(points), args.points, replace=False))
        points, colours, views = points[pick], colours[pick], views[pick]
    normals = None
    if args.normals:
        normals = point_normals(points, cameras.c2w[views, :3, 3], normal_radius(model, params, meta))
    out, coordinates = write_in_frame(args.run_dir, args.frame, args.output, "points.ply", points, None, colours,
                                      normals)
    print(f"{out}: {len(points)} points (of {seen} opaque pixels in {len(cameras)} training views, "
          f"{int(keep.sum())} inside the crop; step {meta['step']}; {coordinates})")
    return out


def cli(argv: list[str] | None = None) -> None:
    """The command line: one `error:` line and exit status 2 for a UserError."""
    command.run(main, ExportPointsArgs, argv)


if __name__ == "__main__":
    cli()
