"""Export a trained run's surface as a coloured triangle mesh (PLY).

    python -m tensorf.export_mesh --run-dir RUN [--output RUN/mesh.ply] [--resolution 256]

Marching cubes (scikit-image) on the opacity a voxel-sized step would have, sampled on a regular
grid over the model's box (the official TensoRF export thresholds the same quantity at 0.005);
vertex colours come from the appearance field seen head-on (view direction = -normal). The
vertices are in world units whatever the field's space: a forward-facing run's NDC and an
unbounded run's contracted space are taken back to the world (by default an unbounded run's
mesh keeps the unit region, the subject, and leaves out the background squeezed around it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
from jax.sharding import Mesh

from tensorf import command
from tensorf.chunked import map_chunks
from tensorf.data.cameras import Ndc, ndc_to_world
from tensorf.errors import UserError
from tensorf.models.base import trained_box
from tensorf.parallel import all_devices, jit_over_rows, replicate, rows_per_call
from tensorf.render import uncontract
from tensorf.run import field_to_capture, frame_name, load_cameras, restore_run, to_capture_frame


@dataclasses.dataclass(frozen=True)
class ExportMeshArgs:
    """Marching-cubes mesh with vertex colours from a trained run."""

    run_dir: Path
    """Run directory written by train_lego.py."""
    output: Path | None = None
    """PLY file to write (default RUN/mesh.ply)."""
    resolution: int | None = None
    """Samples along the longest axis of the region meshed (default: as fine as the checkpoint's grid)."""
    level: float = 0.005
    """Opacity of one voxel-sized step at which the surface is placed."""
    crop: bool = True
    """An unbounded (contracted) run: mesh only the unit region, where contraction leaves space
    alone and the field resolves the subject. --no-crop meshes the background too, taken back to
    world units (coarse, and as far out as the field put it)."""
    frame: Literal["capture", "run"] = "capture"
    """Coordinates written: the capture's own (the COLMAP model's, the Metashape chunk's, the
    transforms.json's or poses_bounds.npy's world, as RUN/dataparser_transforms.json maps them),
    where they overlay the capture's sparse points and other tools' reconstructions; or the
    run's (normalised: what the viewer and camera paths use)."""
    step: int | None = None
    """Checkpoint step (default: latest)."""
    best: bool = False
    """Use the checkpoint --keep-best kept (the best val PSNR) instead of --step's."""
    chunk: int = 65536
    """Points evaluated per chunk (bounds memory)."""


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray | None, colors: np.ndarray,
              normals: np.ndarray | None = None, comment: str | None = None) -> None:
    """Binary little-endian PLY. vertices (V, 3) float, faces (F, 3) int (None: a point cloud),
    colors (V, 3) uint8, normals (V, 3) float or None; comment: a header line."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        + ("" if comment is None else f"comment {comment}\n")
        + f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        + ("" if normals is None else "property float nx\nproperty float ny\nproperty float nz\n")
        + "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        + ("" if faces is None else f"element face {len(faces)}\nproperty list uchar int vertex_indices\n")
        + "end_header\n"
    )
    faces = np.zeros((0, 3), np.int32) if faces is None else faces
    vdt = np.dtype([("xyz", "<f4", 3)] + ([] if normals is None else [("n", "<f4", 3)]) + [("rgb", "u1", 3)])
    v = np.empty(len(vertices), vdt)
    v["xyz"], v["rgb"] = vertices, colors
    if normals is not None:
        v["n"] = normals
    fdt = np.dtype([("n", "u1"), ("idx", "<i4", 3)])
    f = np.empty(len(faces), fdt)
    f["n"], f["idx"] = 3, faces
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(v.tobytes())
        fh.write(f.tobytes())


def frame_comment(frame: str) -> str:
    """The PLY header comment naming an export's --frame (tensorf.export_cameras matches it)."""
    return f"tensorf-jax frame {frame}"


def write_in_frame(run_dir: Path, frame: str, output: Path | None, default_name: str, vertices: np.ndarray,
                   faces: np.ndarray | None, colors: np.ndarray, normals: np.ndarray | None = None) -> tuple[Path, str]:
    """Write an export's PLY (output, or RUN/default_name) in the coordinates `frame` names: the
    capture's (tensorf.run.field_to_capture) or the run's. Returns the file and which they were."""
    to_source = field_to_capture(run_dir) if frame == "capture" else None
    if to_source is not None:
        vertices, normals = to_capture_frame(to_source, vertices, normals)
    out = output or Path(run_dir) / default_name
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_ply(out, np.asarray(vertices, np.float32), faces, colors, normals, comment=frame_comment(frame))
    except OSError as e:
        raise UserError(f"{out}: cannot write it ({e.strerror}); pick another --output") from None
    return out, frame_name(run_dir, frame)


def extract_mesh(model, params, aabb: np.ndarray, resolution: int, level: float, chunk: int, mesh: Mesh | None = None):
    """(vertices (V, 3), faces (F, 3), colors (V, 3) uint8) of the field's surface; the field
    queries are spread over the mesh's devices when one is given."""
    from skimage import measure  # optional: only mesh export needs scikit-image

    size = aabb[1] - aabb[0]
    counts = np.maximum(2, np.round(size / size.max() * resolution)).astype(int)
    axes = [np.linspace(aabb[0][d], aabb[1][d], counts[d]) for d in range(3)]
    xyz = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    # params are passed into jit, not closed over (closures compile them in as constants).
    density, color = jit_over_rows(model.density, mesh, 1), jit_over_rows(model.color, mesh, 2)
    multiple = rows_per_call(mesh)
    if mesh is not None:
        params = replicate(mesh, params)
    sigma = map_chunks(lambda x: density(params, x), xyz, chunk=chunk, multiple=multiple).reshape(*counts)
    spacing = size / (counts - 1)
    alpha = 1.0 - np.exp(-sigma * float(np.mean(spacing)))
    if not (alpha.min() < level < alpha.max()):
        where = "every voxel is above it" if level <= alpha.min() else "no voxel reaches it"
        raise UserError(f"no surface at opacity level {level}: {where} (field opacity spans {alpha.min():.3g}.."
                        f"{alpha.max():.3g}); train longer or pass --level between them")
    verts, faces, normals, _ = measure.marching_cubes(alpha, level, spacing=tuple(spacing))
    verts = (verts + aabb[0]).astype(np.float32)
    # skimage normals point towards increasing opacity (into the object); look along them.
    view = normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-8)
    rgb = map_chunks(lambda x, d: color(params, x, d), verts, view.astype(np.float32), chunk=chunk, multiple=multiple)
    return verts, faces.astype(np.int32), (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def to_world(vertices: np.ndarray, scene, ndc: Ndc | None) -> np.ndarray:
    """World points (V, 3) of points in the field's space: the capture's NDC (the training
    cameras' Ndc) unprojected (ndc_to_world), contracted space expanded (uncontract), the world
    as it is."""
    if scene.ndc:
        return ndc_to_world(vertices, ndc.sx, ndc.sy, ndc.near)
    if scene.contraction:
        return uncontract(vertices, scene.contraction, scene.shell)
    return np.asarray(vertices, np.float64)


def finite_part(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray):
    """(vertices, faces, colors) without the non-finite vertices (NDC's and contraction's
    infinity) and the faces that touch them, the faces renumbered."""
    ok = np.isfinite(vertices).all(-1)
    faces = faces[ok[faces].all(-1)]
    return vertices[ok], (np.cumsum(ok) - 1)[faces].astype(np.int32), colors[ok]


def world_mesh(model, params, cells: int, resolution: int | None, level: float, crop: bool, chunk: int,
               ndc: Ndc | None = None, mesh: Mesh | None = None):
    """(vertices (V, 3) in world units, faces (F, 3), colors (V, 3) uint8, samples per axis) of
    the field's surface, sampled `resolution` times along the longest axis of the region meshed
    (default: as finely as the field's `cells` along its box)."""
    box = trained_box(model, params)
    region = box
    if model.scene.contraction and crop:
        region = np.stack([np.maximum(box[0], -1.0), np.minimum(box[1], 1.0)]).astype(np.float32)
        if (region[1] <= region[0]).any():
            raise UserError("the field's box leaves out the unit region, where the subject is; pass --no-crop")
    resolution = resolution or max(2, round(cells * float((region[1] - region[0]).max() / (box[1] - box[0]).max())))
    verts, faces, colors = extract_mesh(model, params, region, resolution, level, chunk, mesh)
    return *finite_part(to_world(verts, model.scene, ndc), faces, colors), resolution


def main(args: ExportMeshArgs) -> Path:
    if args.resolution is not None and args.resolution < 2:  # option_ranges holds it to 1, as for images
        raise UserError(f"--resolution must be at least 2 (marching cubes needs two samples along each axis), got "
                        f"{args.resolution}")
    cfg, model, params, meta = restore_run(args.run_dir, args.step, args.best)
    cells = max(meta["model_state"].get("resolution") or [256])  # NeRF: no grid of its own
    ndc = load_cameras(args.run_dir, cfg).ndc if model.scene.ndc else None
    verts, faces, colors, resolution = world_mesh(model, params, cells, args.resolution, args.level, args.crop,
                                                  args.chunk, ndc, all_devices())
    out, coordinates = write_in_frame(args.run_dir, args.frame, args.output, "mesh.ply", verts, faces, colors)
    print(f"{out}: {len(verts)} vertices, {len(faces)} faces (step {meta['step']}, {resolution} samples per axis; "
          f"{coordinates})")
    return out


def cli(argv: list[str] | None = None) -> None:
    """The command line: one `error:` line and exit status 2 for a UserError."""
    command.run(main, ExportMeshArgs, argv)


if __name__ == "__main__":
    cli()
