"""nerfstudio / instant-ngp captures: one transforms.json (COLMAP poses, OpenGL camera axes).

Intrinsics are shared at the top level or given per frame (`fl_x`, `fl_y`, `cx`, `cy`, `w`, `h`,
or `camera_angle_x`); `file_path` is relative to the json. Poses are normalised the way
nerfstudio's dataparser does by default (nerfstudio_dataparser.py: orientation_method "up",
center_method "poses", auto_scale_poses): rotated so the mean camera up is +z, translated so the
mean camera position is the origin, scaled so the farthest camera sits at distance 1 along an
axis. The box is ours (nerfstudio's [-1, 1]^3 suits its contracted fields, and leaves a
forward-facing subject outside): centred on the point the cameras look at (nearest to every
optical axis), as wide as what the cameras see there (distance x tan(half field of view), x 1.5),
so it fits an object in a 360-degree capture and the subject of a forward-facing one alike. When
the capture names its sparse point cloud (`ply_file_path`), the box is fitted to the points instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tensorf.data.cameras import Cameras, focal_from_fov
from tensorf.data.images import read_images
from tensorf.data.orbit import orbit_from_cameras
from tensorf.data.points import box_around, read_ply_points
from tensorf.data.views import Scene, Views
from tensorf.errors import UserError, warn

DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")
NEAR = 0.05  # nerfstudio's default near plane, in the normalised units
BOX_MARGIN = 1.5


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking unit vector a onto unit vector b (the shortest arc)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-8:  # opposite: half a turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def normalise_poses(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """nerfstudio's default: orient (mean up -> +z), centre (mean position -> 0), scale (max |t| = 1).
    Returns the new poses (N, 4, 4), the (4, 4) transform applied and the scale."""
    rot = rotation_between(c2w[:, :3, 1].mean(0), np.array([0.0, 0.0, 1.0]))
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rot, -rot @ c2w[:, :3, 3].mean(0)
    out = transform @ c2w
    scale = 1.0 / max(float(np.abs(out[:, :3, 3]).max()), 1e-8)
    out[:, :3, 3] *= scale
    return out, transform, scale


def auto_box(c2w: np.ndarray, half_fov: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The box the cameras (N, 4, 4) look into: around their focus point, BOX_MARGIN times what
    the widest half field of view (N,) (radians) spans at the mean distance to it."""
    focus = orbit_from_cameras(c2w).center
    distance = float(np.linalg.norm(c2w[:, :3, 3] - focus, axis=-1).mean())
    half = BOX_MARGIN * distance * float(np.tan(half_fov.max()))
    return tuple((focus - half).tolist()), tuple((focus + half).tolist())


def _intrinsics(meta: dict, frame: dict, where: str) -> tuple[float, float, float, float, int, int]:
    """fx, fy, cx, cy, w, h of one frame (its own keys over the file's)."""
    get = lambda k: frame.get(k, meta.get(k))  # noqa: E731
    model = get("camera_model") or "PERSPECTIVE"
    if model not in ("PERSPECTIVE", "OPENCV", "SIMPLE_PINHOLE", "PINHOLE"):
        raise UserError(f"{where}: camera_model {model} is not supported (pinhole only); undistort or re-export "
                        "the capture as PERSPECTIVE (e.g. COLMAP image_undistorter, ns-process-data)")
    bent = {k: float(get(k)) for k in DISTORTION if get(k) not in (None, 0, 0.0)}
    if bent:
        raise UserError(f"{where}: lens distortion {bent} is not applied to rays here; undistort the images and "
                        "re-export transforms.json (COLMAP image_undistorter, or ns-process-data) or set them to 0")
    w, h = get("w"), get("h")
    if w is None or h is None:
        raise UserError(f"{where}: image size missing; add 'w' and 'h'")
    w, h = int(w), int(h)
    fx = get("fl_x")
    if fx is None:
        if get("camera_angle_x") is None:
            raise UserError(f"{where}: no focal length; add 'fl_x' (and 'fl_y') or 'camera_angle_x'")
        fx = focal_from_fov(w, float(get("camera_angle_x")))
    fy = get("fl_y")
    if fy is None:
        fy = focal_from_fov(h, float(get("camera_angle_y"))) if get("camera_angle_y") is not None else fx
    cx, cy = get("cx"), get("cy")
    return float(fx), float(fy), float(w / 2 if cx is None else cx), float(h / 2 if cy is None else cy), w, h


def _image_path(root: Path, rel: str, downscale: int) -> tuple[Path, int]:
    """The file for a frame and the factor still to apply: images_<d>/<name> as nerfstudio's
    ns-process-data writes it, else the full-size file downscaled here."""
    full = root / rel
    if downscale > 1:
        small = root / f"{full.parent.name}_{downscale}" / full.name
        if full.parent.name == "images" and small.is_file():
            return small, 1
    return full, downscale


def load_transforms(root: Path, downscale: int = 1, hold_every: int = 8, eval_views: tuple[int, ...] = (),
                    background: float = 1.0) -> tuple[Views, Views, Scene, str]:
    """(train views, eval views, scene, eval split name) of a transforms.json capture. Splits from
    its train_filenames / test_filenames (or val_filenames) lists when present, else every
    `hold_every`-th frame held out as test."""
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
    poses, intr, files = [], [], []
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
        poses.append(pose)
        intr.append(_intrinsics(meta, fr, where))
        files.append(_image_path(root, str(fr["file_path"]), downscale))
    c2w, transform, scale = normalise_poses(np.stack(poses))
    if float(meta.get("aabb_scale", 1)) > 1:
        warn(f"{path}: aabb_scale {meta['aabb_scale']} marks an unbounded capture; without --data.contraction linf "
             "(or --preset unbounded) what lies beyond the box is painted on its walls")

    names = [str(fr["file_path"]) for fr in frames]
    lists = {k: meta.get(f"{k}_filenames") for k in ("train", "val", "test")}
    if lists["train"]:
        lookup = {n: i for i, n in enumerate(names)} | {Path(n).name: i for i, n in enumerate(names)}
        split = "test" if lists["test"] else "val"

        def indices(key: str) -> list[int]:
            missing = [n for n in lists[key] or [] if n not in lookup and Path(n).name not in lookup]
            if missing:
                raise UserError(f"{path}: {key}_filenames names {missing[0]!r}, which no frame has")
            return [lookup.get(n, lookup.get(Path(n).name)) for n in lists[key] or []]

        train, test = indices("train"), indices(split)
    else:
        split = "test"
        test = list(range(0, len(frames), hold_every))
        train = [i for i in range(len(frames)) if i not in set(test)]
    if not train or not test:
        raise UserError(f"{path}: {len(train)} train and {len(test)} {split} frames; both splits need frames "
                        "(add frames or change --data.hold-every)")
    if eval_views:
        bad = [i for i in eval_views if not 0 <= i < len(test)]
        if bad:
            raise UserError(f"{path}: {split} view indices {bad} out of range ({len(test)} {split} views)")
        test = [test[i] for i in eval_views]

    def views(idx: list[int]) -> Views:
        extra = {files[i][1] for i in idx}
        if len(extra) > 1:  # some frames had images_<d>/ files, others not
            raise UserError(f"{root}: images_{downscale}/ holds only some of the frames; complete it or remove it")
        images = read_images([files[i][0] for i in idx], extra.pop(), background, where=str(path))
        for i, img in zip(idx, images):
            w, h = intr[i][4:]
            if (img.shape[1] * downscale, img.shape[0] * downscale) != (w, h):
                raise UserError(f"{files[i][0]}: image is {img.shape[1]}x{img.shape[0]} after downscale {downscale}, "
                                f"but transforms.json says {w}x{h}; fix 'w'/'h' or the image")
        k = np.asarray([intr[i][:4] for i in idx]) / downscale
        h, w = images[0].shape[:2]
        n = len(idx)
        cams = Cameras(c2w[idx].astype(np.float32), k[:, 0], k[:, 1], k[:, 2], k[:, 3], np.full(n, w, np.int64),
                       np.full(n, h, np.int64))
        return Views(images=np.stack(images), cameras=cams, names=tuple(Path(names[i]).stem for i in idx))

    k = np.asarray(intr)
    half_fov = np.arctan(np.maximum(k[:, 4] / 2 / k[:, 0], k[:, 5] / 2 / k[:, 1]))
    box = auto_box(c2w, half_fov)
    if meta.get("ply_file_path"):
        # The surfaces COLMAP found, moved and scaled as the poses were: a tighter box than the
        # cameras' view (the pose normalisation applies to points as to camera centres).
        pts = read_ply_points(root / str(meta["ply_file_path"]))
        box = box_around(scale * (pts @ transform[:3, :3].T + transform[:3, 3]))
    reach = float(np.linalg.norm(c2w[:, :3, 3][:, None] - np.asarray(box)[None], axis=-1).max())
    scene = Scene(aabb=box, near_far=(NEAR, reach), background=background)
    return views(train), views(test), scene, split
