"""A capture's sparse point cloud (COLMAP's, as nerfstudio's `ply_file_path` names it), read to
choose the scene box from where the surfaces are rather than from where the cameras look."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tensorf.data import lens
from tensorf.errors import UserError

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
          "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
          "double": "f8", "float64": "f8"}
POINT_QUANTILE = 0.01  # share of points left out on each side of each axis: COLMAP's stray points
POINT_MARGIN = 0.1  # of the box's size, added on each side
# box_seen cuts each image into CELLS x CELLS cells; a cell holding fewer than CELL_POINTS points
# is no surface (a stray point stands alone; a textured surface gives SIFT several per cell).
CELLS = 16
CELL_POINTS = 3


def read_ply_points(path: Path) -> np.ndarray:
    """The vertex positions (N, 3) float64 of a PLY file (ascii or binary little-endian; the vertex
    element first, as COLMAP and nerfstudio write it)."""
    return read_ply(path)[0]


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """A PLY file's vertex positions (N, 3) float64, colours (N, 3) uint8 (None when it has no
    red, green, blue) and header comments."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the point cloud ({e.strerror}); fix ply_file_path in transforms.json "
                        "or remove it") from None
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise UserError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header); re-export the point cloud")
    header = raw[:end].decode("ascii", "replace").splitlines()
    fmt, count, props, first, current, comments = None, 0, [], None, None, []
    for line in header:
        words = line.split()
        if words[:1] == ["format"] and len(words) > 1:
            fmt = words[1]
        elif words[:1] == ["comment"]:
            comments.append(" ".join(words[1:]))
        elif words[:1] == ["element"] and len(words) == 3 and words[2].isdigit():
            first, current = first or words[1], words[1]
            if current == "vertex":
                count = int(words[2])
        elif words[:1] == ["property"] and current == "vertex" and len(words) >= 3:
            props.append((words[-1], None if words[1] == "list" else _TYPES.get(words[1])))
    names = [p[0] for p in props]
    if first != "vertex" or not {"x", "y", "z"} <= set(names) or any(t is None for _, t in props):
        raise UserError(f"{path}: expected a first element 'vertex' with numeric x, y, z properties; re-export the "
                        "point cloud (e.g. ns-process-data writes sparse_pc.ply)")
    rgb = ("red", "green", "blue")
    body = raw[end + len(b"end_header\n"):]
    try:
        if fmt == "binary_little_endian":
            table = np.frombuffer(body, dtype=np.dtype([(n, "<" + t) for n, t in props]), count=count)
            column = lambda a: table[a]  # noqa: E731
        elif fmt == "ascii":
            rows = np.loadtxt(body.decode("ascii").split("\n")[:count], ndmin=2)
            column = lambda a: rows[:, names.index(a)]  # noqa: E731
        else:
            raise UserError(f"{path}: PLY format {fmt} is not supported (ascii or binary_little_endian); re-export it")
        xyz = np.stack([column(a).astype(np.float64) for a in "xyz"], -1)
        colors = np.stack([column(a) for a in rgb], -1).astype(np.uint8) if set(rgb) <= set(names) else None
    except ValueError:
        raise UserError(f"{path}: the header promises {count} vertices but the data does not hold them; "
                        "re-export the point cloud") from None
    if len(xyz) != count or not np.all(np.isfinite(xyz)):
        raise UserError(f"{path}: {len(xyz)} of {count} vertices read, or non-finite positions; re-export it")
    return xyz, colors, comments


def box_around(points: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The box around points (N, 3), less POINT_QUANTILE of them on each side of each axis (stray
    points), plus POINT_MARGIN of its size on each side."""
    return _with_margin(*np.quantile(points, [POINT_QUANTILE, 1 - POINT_QUANTILE], axis=0))


def _with_margin(lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The box (lo, hi) grown by POINT_MARGIN of its size on each side."""
    pad = POINT_MARGIN * np.maximum(hi - lo, 1e-6)
    return tuple((lo - pad).tolist()), tuple((hi + pad).tolist())


def box_seen(points: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray, model: str = "pinhole",
             distortion: np.ndarray | None = None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The box around the surfaces that fill the cameras' images, plus POINT_MARGIN: each image
    is cut into CELLS x CELLS cells, and each cell that CELL_POINTS or more of the points (N, 3)
    project into gives one surface, its point of median distance. c2w (V, 4, 4) OpenGL axes;
    intrinsics (V, 6+): fx, fy, cx, cy, width, height of the image the cells cut; model and
    distortion (V, 6): the lens (tensorf.data.lens), through which the points project, so that a
    wide lens's edges, which a pinhole would put outside the image, count too.

    A bounded scene needs every such surface in its box: a ray that leaves the box before its
    surface sees the flat background instead. box_around weighs the points, and they crowd
    where the texture is. The edge of a wall that fills a strip of some views can hold under 1%
    of them and be trimmed with the strays (instant-ngp's fox with COLMAP's own poses: a white
    strip down a held-out view, benchmarks/results.md). Here every cell of every image counts
    once, and a stray point, alone in its cell, not at all."""
    distortion = np.zeros((len(c2w), 6)) if distortion is None else np.asarray(distortion, np.float64)
    surfaces = []
    for pose, (fx, fy, cx, cy, w, h), params in zip(c2w, np.asarray(intrinsics, np.float64)[:, :6], distortion):
        # Camera axes as the lens models take them (OpenCV's: y down, z forward).
        local = (points - pose[:3, 3]) @ pose[:3, :3] * np.array([1.0, -1.0, -1.0])
        # Only directions within the image's widest angle project: a lens polynomial folds back
        # beyond it, and a pinhole sees nothing behind it.
        corners = lens.undistorted_directions((np.array([0.0, w, 0.0, w]) - cx) / fx,
                                              (np.array([0.0, 0.0, h, h]) - cy) / fy, params, model, xp=np)
        widest = float(np.arctan2(np.hypot(corners[0], corners[1]), corners[2]).max())
        widest = np.pi if model == "equirectangular" else widest  # a panorama's corners are its poles
        inside = np.arctan2(np.hypot(local[:, 0], local[:, 1]), local[:, 2]) <= widest
        xd, yd = lens.project(np.where(inside[:, None], local, [0.0, 0.0, 1.0]), params, model, xp=np)
        u, v = fx * xd + cx, fy * yd + cy
        seen = inside & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        cell = (np.floor(u[seen] * CELLS / w) * CELLS + np.floor(v[seen] * CELLS / h)).astype(np.int64)
        order = np.lexsort((np.linalg.norm(local[seen], axis=-1), cell))
        cell, kept = cell[order], points[seen][order]
        starts = np.flatnonzero(np.r_[True, np.diff(cell) != 0])
        ends = np.r_[starts[1:], len(cell)]
        full = ends - starts >= CELL_POINTS
        surfaces.append(kept[(starts[full] + ends[full]) // 2])
    surfaces = np.concatenate(surfaces)
    if not len(surfaces):
        return None
    return _with_margin(surfaces.min(0), surfaces.max(0))
