"""nerfstudio / instant-ngp captures: one transforms.json (COLMAP poses, OpenGL camera axes).

Intrinsics are shared at the top level or given per frame (`fl_x`, `fl_y`, `cx`, `cy`, `w`, `h`,
or `camera_angle_x`); `file_path` is relative to the json. Lens distortion (`k1`..`k4`, `p1`,
`p2`) is applied to the rays: `camera_model` OPENCV (instant-ngp writes no model and means
OPENCV) or OPENCV_FISHEYE (or instant-ngp's `is_fisheye`). The optional `ply_file_path` names
the sparse points; a frame's optional `mask_path` an image whose zero pixels are neither
trained on nor judged (nerfstudio's convention: a passer-by, the photographer's shadow).
Normalisation, box and splits: tensorf.data.capture.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tensorf.data.cameras import focal_from_fov
from tensorf.data.capture import Capture, Frame
from tensorf.data.images import at_scale, auto_downscale, find_image
from tensorf.data.points import read_ply_points
from tensorf.errors import UserError, warn

# nerfstudio's camera_model names -> ours (nerfstudio/cameras/camera_utils.py, CAMERA_MODEL_TO_TYPE).
CAMERA_MODELS = {"PERSPECTIVE": "opencv", "PINHOLE": "opencv", "SIMPLE_PINHOLE": "opencv", "OPENCV": "opencv",
                 "OPENCV_FISHEYE": "fisheye", "EQUIRECTANGULAR": "equirectangular"}
DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")  # lens.PARAMS, nerfstudio's distortion_params order


def _intrinsics(meta: dict, frame: dict, where: str) -> tuple[tuple[float, float, float, float, int, int], str,
                                                              tuple[float, ...]]:
    """(fx, fy, cx, cy, w, h), lens model and distortion of one frame (its own keys over the file's)."""
    get = lambda k: frame.get(k, meta.get(k))  # noqa: E731
    name = get("camera_model") or ("OPENCV_FISHEYE" if get("is_fisheye") else "OPENCV")
    if name not in CAMERA_MODELS:
        raise UserError(f"{where}: camera_model {name} is not supported (one of {', '.join(CAMERA_MODELS)}); "
                        "undistort the capture or re-export it with one of these (e.g. ns-process-data)")
    model = CAMERA_MODELS[name]
    try:
        dist = tuple(float(get(k) or 0.0) for k in DISTORTION)
    except (TypeError, ValueError):
        raise UserError(f"{where}: distortion parameters {DISTORTION} must be numbers") from None
    if model == "opencv" and dist[3]:
        raise UserError(f"{where}: k4 = {dist[3]} is a fisheye (or rational) term; set camera_model OPENCV_FISHEYE "
                        "if the lens is a fisheye")
    if model == "fisheye" and any(dist[4:]):
        raise UserError(f"{where}: a fisheye lens has no tangential terms p1, p2; remove them")
    w, h = get("w"), get("h")
    if w is None or h is None:
        raise UserError(f"{where}: image size missing; add 'w' and 'h'")
    w, h = int(w), int(h)
    if model == "equirectangular":
        return _panorama(get, w, h), model, (0.0,) * 6
    if get("fl_x") is None and get("camera_angle_x") is None:
        raise UserError(f"{where}: no focal length; add 'fl_x' (and 'fl_y') or 'camera_angle_x'")
    try:
        fx = float(get("fl_x")) if get("fl_x") is not None else focal_from_fov(w, _angle(get("camera_angle_x")))
        fy = float(get("fl_y")) if get("fl_y") is not None \
            else focal_from_fov(h, _angle(get("camera_angle_y"))) if get("camera_angle_y") is not None else fx
        cx, cy = (float(v) if v is not None else size / 2 for v, size in ((get("cx"), w), (get("cy"), h)))
    except (TypeError, ValueError):
        raise UserError(f"{where}: fl_x, fl_y, cx, cy must be numbers and camera_angle_x / _y angles in (0, pi) "
                        "radians") from None
    return (fx, fy, cx, cy, w, h), model if any(dist) else "pinhole", dist


def _angle(value) -> float:
    """A field of view in radians, strictly between 0 and pi (else ValueError)."""
    angle = float(value)
    if not 0 < angle < np.pi:
        raise ValueError(angle)
    return angle


def _panorama(get, w: int, h: int) -> tuple[float, float, float, float, int, int]:
    """Our intrinsics of nerfstudio's EQUIRECTANGULAR camera. nerfstudio casts a panorama's rays at
    longitude pi (x - cx) / fl_x and polar angle pi (0.5 + (y - cy) / fl_y) (cameras.py, with
    fl_x = w / 2 and fl_y = h for a whole sphere, its default here); ours are at (x - cx) / fx and
    latitude (y - cy) / fy (lens.py), so fx = fl_x / pi and fy = fl_y / pi."""
    fl_x, fl_y = get("fl_x"), get("fl_y")
    fl_x = w / 2 if fl_x is None else float(fl_x)
    fl_y = h if fl_y is None else float(fl_y)
    cx, cy = get("cx"), get("cy")
    return fl_x / math.pi, fl_y / math.pi, float(w / 2 if cx is None else cx), float(h / 2 if cy is None else cy), w, h


def _image_path(root: Path, rel: str, downscale: int) -> tuple[Path, int]:
    """The file for a frame's image or mask and the factor still to apply (at_scale): only
    files directly in images/ or masks/ have downscaled twins."""
    full = find_image(root, rel)
    if full.parent.name in ("images", "masks"):
        return at_scale(full.parent, full.name, downscale)
    return full, downscale


def read_transforms(root: Path, downscale: int | str = 1) -> Capture:
    """The frames, points and split lists of root/transforms.json, checked, its images placed
    for `downscale` ("auto": images.auto_downscale of the frames' sizes)."""
    root = Path(root)
    path = root / "transforms.json"
    if not path.is_file():
        raise UserError(f"{path} not found; a nerfstudio / instant-ngp capture needs transforms.json "
                        "(ns-process-data or instant-ngp's colmap2nerf.py write it)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); fix or re-export it") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{path}: 'frames' must be a non-empty list; re-export the capture")
    rows = []  # each frame's entry, pose, intrinsics, lens model and distortion
    for i, fr in enumerate(frames):
        where = f"{path} frame {i}"
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise UserError(f"{where}: needs 'file_path' and 'transform_matrix'")
        try:
            pose = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise UserError(f"{where}: transform_matrix is not a matrix of numbers") from None
        if pose.shape != (4, 4):
            shape = "x".join(map(str, pose.shape))
            raise UserError(f"{where}: transform_matrix is {shape}, expected 4x4")
        if not np.all(np.isfinite(pose)):
            raise UserError(f"{where}: transform_matrix holds a non-finite number")
        rows.append((fr, pose, *_intrinsics(meta, fr, where)))
    if downscale == "auto":
        downscale = auto_downscale([intr[4:] for _, _, intr, _, _ in rows], str(path))
    out = []
    for fr, pose, intr, model, dist in rows:
        file, factor = _image_path(root, str(fr["file_path"]), downscale)
        mask, mask_factor = _image_path(root, str(fr["mask_path"]), downscale) if fr.get("mask_path") else (None, 1)
        depth = root / str(fr["depth_file_path"]) if fr.get("depth_file_path") else None
        out.append(Frame(file=file, factor=factor, c2w=pose, intrinsics=intr, model=model, distortion=dist,
                         name=str(fr["file_path"]), mask=mask, mask_factor=mask_factor, depth=depth))
    if float(meta.get("aabb_scale", 1)) > 1 and not meta.get("ply_file_path"):
        warn(f"{path}: aabb_scale {meta['aabb_scale']} marks an unbounded capture, and with no sparse points "
             "(ply_file_path) its extent is unknown; give --data.contraction linf if much lies beyond the subject")
    points = read_ply_points(root / str(meta["ply_file_path"])) if meta.get("ply_file_path") else None
    splits = {k: list(meta.get(f"{k}_filenames") or []) for k in ("train", "val", "test")}
    if splits["train"]:
        names = {f.name for f in out} | {Path(f.name).name for f in out}
        for key, listed in splits.items():
            unknown = [n for n in listed if n not in names and Path(n).name not in names]
            if unknown:
                raise UserError(f"{path}: {key}_filenames names {unknown[0]!r}, which no frame has")
    return Capture(source=path, frames=out, points=points, splits=splits, downscale=downscale)
