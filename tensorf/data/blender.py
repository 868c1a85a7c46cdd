"""Blender / NeRF-synthetic loader: transforms_<split>.json + RGBA PNGs composited on white."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from tensorf.data.cameras import Cameras, degenerate_rotation, focal_from_fov
from tensorf.data.images import find_image, read_images
from tensorf.data.views import Scene, Views
from tensorf.errors import UserError

# The NeRF-synthetic scenes' bounds and white backdrop (official TensoRF dataLoader/blender.py:
# scene_bbox +-1.5, near_far [2, 6], white_bg).
SCENE = Scene(aabb=((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5)), near_far=(2.0, 6.0), background=1.0)

LEGO_HINT = (
    "get the NeRF-synthetic scenes (nerf_synthetic/lego) or copy ../shared/data/nerf_synthetic/lego "
    "there, or train on the generated scene with `python train_lego.py --preset generated`"
)


def available_splits(root: Path) -> list[str]:
    return sorted(p.name[len("transforms_") : -len(".json")] for p in Path(root).glob("transforms_*.json"))


def _read_split(root: Path, split: str) -> tuple[Path, float, list[np.ndarray], list[Path]]:
    """transforms_<split>.json read and checked: its path, camera_angle_x, the poses and the image
    files, in frame order."""
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist; {LEGO_HINT}")
    meta_path = root / f"transforms_{split}.json"
    if not meta_path.is_file():
        have = available_splits(root)
        raise UserError(f"{meta_path} not found (splits here: {', '.join(have) or 'none'}); pick another split")
    try:
        meta = json.loads(meta_path.read_text())
        angle = float(meta["camera_angle_x"])
        if not 0 < angle < np.pi:
            raise ValueError(f"camera_angle_x must be an angle in (0, pi) radians, got {angle:g}")
        frames = meta["frames"]
        if not isinstance(frames, list) or not frames:
            raise ValueError("'frames' must be a non-empty list")
        poses, paths = [], []
        for fr in frames:
            pose = np.asarray(fr["transform_matrix"], dtype=np.float32)
            if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
                raise ValueError("every 'transform_matrix' must be a finite 4x4 matrix")
            if degenerate_rotation(pose):
                raise ValueError(f"frame {len(poses)}'s transform_matrix has a degenerate rotation (a zero or "
                                 "repeated axis)")
            poses.append(pose)
            paths.append(str(fr["file_path"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise UserError(f"{meta_path}: malformed transforms json ({detail}); fix or re-export it") from None
    return meta_path, angle, poses, [find_image(root, rel) for rel in paths]


def full_size(root: Path, split: str) -> tuple[int, int]:
    """(width, height) of the split's images (they share one size): its first image's header."""
    file = _read_split(Path(root), split)[3][0]
    try:
        h, w = iio.improps(file).shape[:2]
    except Exception:  # missing or broken: load_blender names it
        return 0, 0
    return w, h


def load_blender(root: Path, split: str, downscale: int = 1, views: tuple[int, ...] = ()) -> Views:
    """Load one split, or only the frames at indices `views` (all when empty; the other frames'
    images are not read, so they need not be there). Raises UserError naming the file for every
    kind of bad input."""
    root = Path(root)
    if downscale < 1:
        raise UserError(f"downscale must be a positive integer, got {downscale}")
    meta_path, angle, poses, files = _read_split(root, split)
    if views:
        bad = [i for i in views if not 0 <= i < len(files)]
        if bad:
            raise UserError(f"{meta_path}: view indices {bad} out of range (the split has {len(files)} views)")
        poses, files = [poses[i] for i in views], [files[i] for i in views]
    # Decoding dominates loading (100 full-size lego PNGs: ~10 s on one core): a thread pool.
    imgs = read_images(files, downscale, SCENE.background, where=str(root / split), expect_alpha=True)
    names = [p.stem for p in files]
    h, w = imgs.shape[1:3]
    cameras = Cameras.centered(np.stack(poses), w, h, focal_from_fov(w, angle))
    return Views(images=imgs, cameras=cameras, names=tuple(names), files=tuple(files))
