"""Polycam captures: the raw data a Polycam scan exports (its "Raw data" export, developer mode),
unzipped. The folder holds keyframes/ with, per keyframe, a photo and a camera file of the same
name: keyframes/corrected_images/ and keyframes/corrected_cameras/ (Polycam's poses after its own
optimisation, the photos undistorted to them), else keyframes/images/ and keyframes/cameras/ (as
the phone recorded them).

Read as nerfstudio's `ns-process-data polycam` reads it (process_data/polycam_utils.py and
ProcessPolycam in scripts/process_data.py, read for this):
- a camera file holds fx, fy, cx, cy, width, height of its photo and t_00 .. t_23, the rows of a
  3 x 4 camera-to-world matrix in OpenGL camera axes (x right, y up, looking down -z), in a y-up
  world. nerfstudio takes the rows in the order 2, 0, 1, which turns the world z-up; so does
  this reader, and a capture and the transforms.json nerfstudio makes of it load to the same
  cameras. Exports go back to Polycam's own world (Capture.to_source).
- keyframes whose blur_score is under 25 are left out (nerfstudio's min_blur_score), with a
  warning that says how many;
- the corrected photos are black along their edges where undistortion had no pixel: nerfstudio
  crops 15 pixels from each side. Here those pixels are masked (Frame.border): neither trained on
  nor judged, the cameras unchanged.
- keyframes/depth/<keyframe>.png: the LiDAR's depth in millimetres (16-bit, 256x192), which
  nerfstudio scales up to the photo; used with --data.depth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tensorf.data.capture import Capture, Frame
from tensorf.data.images import at_scale, auto_downscale, listed
from tensorf.errors import UserError, warn

MIN_BLUR_SCORE = 25.0  # nerfstudio ProcessPolycam.min_blur_score
BORDER = 15  # pixels; nerfstudio ProcessPolycam.crop_border_pixels
# Polycam's y-up world to nerfstudio's z-up one: the matrix's rows taken in the order 2, 0, 1.
WORLD = np.array([[0.0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


def find_keyframes(root: Path) -> Path | None:
    """The keyframes/ folder of a Polycam export at root (or root itself when it is that folder)."""
    for folder in (Path(root) / "keyframes", Path(root)):
        if (folder / "corrected_cameras").is_dir() or (folder / "cameras").is_dir():
            return folder
    return None


def _folders(keyframes: Path) -> tuple[Path, Path, bool]:
    """(photos, cameras, corrected): Polycam's corrected keyframes when it wrote them, as nerfstudio
    prefers them, else the recorded ones."""
    corrected = (keyframes / "corrected_cameras", keyframes / "corrected_images")
    if all(d.is_dir() and any(d.iterdir()) for d in corrected):
        return corrected[1], corrected[0], True
    if not (keyframes / "images").is_dir():
        raise UserError(f"{keyframes}: no corrected_images/ or images/ beside the camera files; unzip the whole "
                        "Polycam export (Raw data)")
    return keyframes / "images", keyframes / "cameras", False


def _camera(path: Path) -> tuple[tuple[float, float, float, float, int, int], np.ndarray, float | None]:
    """((fx, fy, cx, cy, w, h), (4, 4) camera-to-world in Polycam's world, blur_score or None) of one camera file."""
    try:
        cam = json.loads(path.read_text())
        intr = (float(cam["fx"]), float(cam["fy"]), float(cam["cx"]), float(cam["cy"]), int(cam["width"]),
                int(cam["height"]))
        c2w = np.eye(4)
        c2w[:3] = [[float(cam[f"t_{i}{j}"]) for j in range(4)] for i in range(3)]
        blur = float(cam["blur_score"]) if "blur_score" in cam else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable JSON file ({e}); re-export the capture from Polycam") from None
    except KeyError as e:
        raise UserError(f"{path}: no {e} (a Polycam camera holds fx, fy, cx, cy, width, height and t_00 .. t_23); "
                        "re-export the capture from Polycam") from None
    except (TypeError, ValueError):
        raise UserError(f"{path}: a value that is not a number; re-export the capture from Polycam") from None
    if not np.isfinite(c2w).all() or min(intr) <= 0:
        raise UserError(f"{path}: its pose or intrinsics are not finite and positive; re-export the capture")
    return intr, c2w, blur


def read_polycam(root: Path, downscale: int | str = 1) -> Capture:
    """The keyframes of a Polycam export at root, their photos placed for `downscale` ("auto":
    images.auto_downscale of the photos' sizes)."""
    keyframes = find_keyframes(Path(root))
    if keyframes is None:
        raise UserError(f"{root}: no keyframes/corrected_cameras/ or keyframes/cameras/ (a Polycam raw-data export); "
                        "unzip the export and point --data.path at its folder")
    photos, cameras, corrected = _folders(keyframes)
    by_stem = {p.stem: p.name for p in listed(photos)}
    read, blurred, unmatched = [], 0, []
    for path in listed(cameras, (".json",)):
        intr, c2w, blur = _camera(path)
        if blur is not None and blur < MIN_BLUR_SCORE:
            blurred += 1
        elif path.stem not in by_stem:
            unmatched.append(path.stem)
        else:
            read.append((by_stem[path.stem], intr, WORLD @ c2w))
    if unmatched:
        warn(f"{cameras}: {len(unmatched)} camera files have no photo in {photos.name}/ (first: {unmatched[0]}); "
             "leaving them out")
    if blurred:
        warn(f"{cameras}: {blurred} keyframes have a blur_score under {MIN_BLUR_SCORE:g} (nerfstudio's cut); "
             "leaving them out")
    if not read:
        raise UserError(f"{cameras}: no keyframe with a photo and a sharp enough blur_score; re-export the capture")
    if downscale == "auto":
        downscale = auto_downscale([intr[4:] for _, intr, _ in read], str(cameras))
    frames = []
    for name, intr, c2w in read:
        file, factor = at_scale(photos, name, downscale)
        depth = keyframes / "depth" / f"{Path(name).stem}.png"  # the LiDAR's, in millimetres (Frame.depth_scale)
        frames.append(Frame(file=file, factor=factor, c2w=c2w, intrinsics=intr, name=name,
                            border=BORDER if corrected else 0, depth=depth if depth.is_file() else None))
    return Capture(source=cameras, frames=frames, downscale=downscale, to_source=np.linalg.inv(WORLD))
