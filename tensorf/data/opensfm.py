"""OpenSfM and OpenDroneMap captures: OpenSfM's reconstruction.json beside the photos in images/
(an OpenSfM dataset folder), or an OpenDroneMap project (opensfm/reconstruction.json, the photos in
images/), as WebODM and ODM leave them. Photos are found as OpenSfM finds them (its dataset.py):
the files image_list.txt names, else images/<shot name>; masks likewise from mask_list.txt, else
masks/<shot name>.png (zero: a pixel neither trained on nor judged).

What the file holds and how it is read (OpenSfM's doc/source/geometry.rst; OpenSplat's
opensfm.cpp read for the layout):
- a list of reconstructions, each with `cameras` (by id), `shots` (by image name) and `points`.
  Of several, the largest (most shots) is read, with a warning, as with COLMAP's several models.
- A shot's `rotation` (axis-angle) and `translation` take world points into its camera's frame
  (x right, y down, z forward): x_cam = R x + t. With GPS the world is a local east-north-up
  frame; training normalises the poses anyway.
- Cameras map to normalised image coordinates: origin at the image centre, the larger side of the
  image 1 (S = max(w, h)); a pixel's centre is at S u + (w - 1) / 2 in OpenSfM's pixel
  coordinates, where the top-left pixel's centre is 0, so our intrinsics (pixel centres at + 0.5)
  are f S and w / 2 + c S. The models:
  - perspective (`focal`, `k1`, `k2`), simple_radial and radial (`focal_x`, `focal_y`, `c_x`,
    `c_y`, `k1` (, `k2`)), brown (also `k3`, `p1`, `p2`, OpenCV's tangential terms): our opencv
    lens;
  - fisheye (`focal`, `k1`, `k2` on the angle) and fisheye_opencv (`focal_x`, `focal_y`, `c_x`,
    `c_y`, `k1`..`k4`): our fisheye;
  - spherical / equirectangular: longitude and latitude over 2 pi (u = lon / 2 pi,
    v = lat / 2 pi, latitude downwards): our equirectangular.
  Other models (dual, fisheye62) are refused in one line.
- `points`: `coordinates` in the world frame (they set the box, as COLMAP's do).
The cameras are posed on the photos as stored: like COLMAP, OpenSfM does not turn a photo by its
EXIF orientation (geometry.rst, "Upright Coordinates"); load_capture turns such photos and their
cameras upright.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from tensorf.data.capture import Capture, Frame
from tensorf.data.images import at_scale, auto_downscale
from tensorf.errors import UserError, warn

PERSPECTIVE = ("perspective", "simple_radial", "radial", "brown")
FISHEYE = ("fisheye", "fisheye_opencv")
PANORAMA = ("spherical", "equirectangular")


def find_reconstruction(root: Path) -> Path | None:
    """reconstruction.json in root (an OpenSfM dataset) or in root/opensfm (an OpenDroneMap project)."""
    for path in (Path(root) / "reconstruction.json", Path(root) / "opensfm" / "reconstruction.json"):
        if path.is_file():
            return path
    return None


def _camera(cam: dict, where: str) -> tuple[tuple[float, float, float, float, int, int], str, tuple[float, ...]]:
    """((fx, fy, cx, cy, w, h) in pixels, our lens model, [k1, k2, k3, k4, p1, p2]) of an OpenSfM camera."""
    kind = cam.get("projection_type")
    if kind not in PERSPECTIVE + FISHEYE + PANORAMA:
        raise UserError(f"{where}: projection_type {kind!r} is not supported (one of "
                        f"{', '.join(PERSPECTIVE + FISHEYE + PANORAMA)}); undistort the images with OpenSfM or ODM "
                        "and train on the undistorted reconstruction")
    try:
        w, h = int(cam["width"]), int(cam["height"])
        num = {k: float(cam.get(k, 0.0)) for k in ("focal", "focal_x", "focal_y", "c_x", "c_y", "k1", "k2", "k3",
                                                    "k4", "p1", "p2")}
    except (KeyError, TypeError, ValueError) as e:
        detail = f"no {e}" if isinstance(e, KeyError) else "a value that is not a number"
        raise UserError(f"{where}: {detail}; re-export the reconstruction") from None
    size = max(w, h)
    if kind in PANORAMA:
        return (size / (2 * math.pi), size / (2 * math.pi), w / 2, h / 2, w, h), "equirectangular", (0.0,) * 6
    fx = num["focal_x"] or num["focal"]
    fy = num["focal_y"] or num["focal"]
    if fx <= 0 or fy <= 0:
        raise UserError(f"{where}: no focal length (focal, or focal_x and focal_y); re-export the reconstruction")
    intr = (fx * size, fy * size, w / 2 + num["c_x"] * size, h / 2 + num["c_y"] * size, w, h)
    if kind in FISHEYE:
        if num["p1"] or num["p2"]:
            raise UserError(f"{where}: a fisheye lens with tangential terms p1, p2 is not supported")
        return intr, "fisheye", (num["k1"], num["k2"], num["k3"], num["k4"], 0.0, 0.0)
    dist = (num["k1"], num["k2"], num["k3"], 0.0, num["p1"], num["p2"])
    return intr, "opencv" if any(dist) else "pinhole", dist


def _pose(shot: dict, where: str) -> np.ndarray:
    """(4, 4) camera-to-world in OpenGL axes of a shot's world-to-camera axis-angle and translation."""
    try:
        r = np.asarray(shot["rotation"], np.float64)
        t = np.asarray(shot["translation"], np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{where}: no {e} (or not numbers); re-export the reconstruction") from None
    if r.shape != (3,) or t.shape != (3,) or not (np.isfinite(r).all() and np.isfinite(t).all()):
        raise UserError(f"{where}: rotation and translation must be 3 finite numbers each; re-export the "
                        "reconstruction")
    angle = float(np.linalg.norm(r))
    k = np.array([[0.0, -r[2], r[1]], [r[2], 0.0, -r[0]], [-r[1], r[0], 0.0]]) / max(angle, 1e-12)
    rot = np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * k @ k  # Rodrigues: world to camera
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rot.T, -rot.T @ t
    c2w[:3, 1:3] *= -1.0  # OpenCV camera axes to OpenGL (y up, looking down -z), as every reader gives them
    return c2w


def _listed(path: Path) -> dict[str, Path]:
    """image name -> file of OpenSfM's image_list.txt (a path per line, relative to its folder) or
    mask_list.txt (an image name, then its mask's path); {} without the file. A listed file that is
    not there (OpenDroneMap writes the paths of the machine it ran on) is left to the folders."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.strip().split(None, 1) if path.name == "mask_list.txt" else [line.strip()]
        if not parts[0]:
            continue
        file = path.parent / parts[-1].strip()
        if file.is_file():
            out[parts[0] if len(parts) == 2 else file.name] = file
    return out


def _files(root: Path, folder: Path, name: str, downscale: int, images: dict, masks: dict):
    """(photo, factor still to apply, mask or None, its factor) of a shot: image_list.txt's file,
    else images/<name> beside the reconstruction or in the project root; mask_list.txt's, else
    masks/<name>.png (OpenSfM's naming) in the same places."""
    if name in images:
        photo, factor = at_scale(images[name].parent, images[name].name, downscale)
    else:
        where = next((d for d in (folder, root) if (d / "images" / name).is_file()), root)
        photo, factor = at_scale(where / "images", name, downscale)
    if name in masks:
        return photo, factor, *at_scale(masks[name].parent, masks[name].name, downscale)
    where = next((d for d in (folder, root) if (d / "masks" / f"{name}.png").is_file()), None)
    if where is None:
        return photo, factor, None, 1
    return photo, factor, *at_scale(where / "masks", f"{name}.png", downscale)


def read_opensfm(root: Path, downscale: int | str = 1) -> Capture:
    """The frames (shots of the largest reconstruction, their photos in root/images/), lenses and
    points of root's reconstruction.json (or root/opensfm/'s), its images placed for `downscale`
    ("auto": images.auto_downscale of the cameras' sizes)."""
    root = Path(root)
    path = find_reconstruction(root)
    if path is None:
        raise UserError(f"{root}: no reconstruction.json (OpenSfM) or opensfm/reconstruction.json (OpenDroneMap); "
                        "run the reconstruction first")
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable JSON file ({e}); re-export the reconstruction") from None
    if isinstance(body, dict):
        body = [body]
    recs = [r for r in body if isinstance(r, dict) and isinstance(r.get("shots"), dict) and r["shots"]] \
        if isinstance(body, list) else []
    if not recs:
        raise UserError(f"{path}: no reconstruction with shots (a list of {{cameras, shots, points}}); the photos were "
                        "not aligned")
    sizes = Counter({i: len(r["shots"]) for i, r in enumerate(recs)})
    best, count = sizes.most_common(1)[0]
    if len(recs) > 1:
        warn(f"{path}: {len(recs)} reconstructions ({', '.join(str(len(r['shots'])) for r in recs)} shots), aligned "
             f"apart; reading the largest ({count})")
    rec = recs[best]
    cameras = rec.get("cameras") if isinstance(rec.get("cameras"), dict) else {}
    lenses, shots = {}, []
    for name, shot in sorted(rec["shots"].items()):
        where = f"{path} shot {name!r}"
        cid = shot.get("camera") if isinstance(shot, dict) else None
        if cid not in cameras:
            raise UserError(f"{where}: its camera {cid!r} is not among the reconstruction's cameras; re-export it")
        if cid not in lenses:
            lenses[cid] = _camera(cameras[cid], f"{path} camera {cid!r}")
        shots.append((name, cid, _pose(shot, where)))
    if downscale == "auto":
        downscale = auto_downscale([lenses[cid][0][4:] for _, cid, _ in shots], str(path))
    frames = []
    images, masks = _listed(path.parent / "image_list.txt"), _listed(path.parent / "mask_list.txt")
    for name, cid, c2w in shots:
        intr, model, dist = lenses[cid]
        file, factor, mask, mask_factor = _files(root, path.parent, name, downscale, images, masks)
        frames.append(Frame(file=file, factor=factor, c2w=c2w, intrinsics=intr, model=model, distortion=dist,
                            name=name, mask=mask, mask_factor=mask_factor))
    points = [p.get("coordinates") for p in (rec.get("points") or {}).values() if isinstance(p, dict)]
    points = np.asarray([p for p in points if isinstance(p, list) and len(p) == 3], np.float64).reshape(-1, 3)
    return Capture(source=path, frames=frames, points=points if len(points) else None, downscale=downscale)
