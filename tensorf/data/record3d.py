"""Record3D captures: what the iOS app Record3D exports for a recording, a folder with
metadata.json and the video's frames in rgb/ (0.jpg, 1.jpg, ...), or a .r3d file unzipped (its
`metadata`, the same JSON, and rgbd/, the frames beside their LZFSE-compressed depth, which is
not read).

Read as nerfstudio's `ns-process-data record3d` reads it (process_data/record3d_utils.py and
ProcessRecord3D in scripts/process_data.py, read for this):
- metadata.json's `poses` hold one row per frame, a unit quaternion (x, y, z, w: scalar last, as
  scipy's from_quat takes it) and then the camera's position: camera-to-world in OpenGL camera
  axes, in ARKit's y-up world, used as it is (training turns the cameras' mean up to +z anyway);
- `K` is the 3 x 3 intrinsic matrix stored column by column, `w` and `h` the frames' size.
  nerfstudio uses K's first entry as both focal lengths and puts the principal point at the
  image's centre ("the metadata dict comes with principle points, but caused errors"); so does
  this reader;
- frame rgb/<i>.<ext> is pose i (nerfstudio pairs the i-th file in numeric order with pose i,
  which is the same while no frame is missing). Files whose name is not a number (a copy such
  as 12(1).jpg) are not frames;
- a recording has a frame per video frame, thousands of them nearly alike: at most 300 are read,
  evenly spread (nerfstudio's max_dataset_size), with a note saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tensorf.data.capture import Capture, Frame
from tensorf.data.colmap import qvec_to_rotation
from tensorf.data.images import IMAGE_SUFFIXES, at_scale, auto_downscale
from tensorf.errors import UserError, warn

MAX_FRAMES = 300  # nerfstudio ProcessRecord3D.max_dataset_size


def _layout(root: Path) -> tuple[Path, Path] | None:
    """(metadata file, frames folder) of a Record3D export at root, or None."""
    meta = next((p for p in (root / "metadata.json", root / "metadata") if p.is_file()), None)
    frames = next((p for p in (root / "rgb", root / "rgbd") if p.is_dir()), None)
    return None if meta is None or frames is None else (meta, frames)


def is_record3d(root: Path) -> bool:
    return _layout(Path(root)) is not None


def _metadata(path: Path) -> tuple[np.ndarray, float, int, int]:
    """(poses (N, 7), focal length, w, h) of metadata.json, checked."""
    try:
        meta = json.loads(path.read_text())
        poses = np.asarray(meta["poses"], np.float64)
        k = np.asarray(meta["K"], np.float64).reshape(3, 3).T
        w, h = int(meta["w"]), int(meta["h"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable JSON file ({e}); export the recording from Record3D again") from None
    except KeyError as e:
        raise UserError(f"{path}: no {e} (Record3D's metadata.json holds poses, K, w and h); export the recording "
                        "from Record3D again") from None
    except (TypeError, ValueError):
        raise UserError(f"{path}: poses must be rows of 7 numbers and K 9 numbers; export the recording again") from None
    if poses.ndim != 2 or poses.shape[1] != 7 or not np.isfinite(poses).all() or not len(poses):
        raise UserError(f"{path}: poses must be rows of 7 finite numbers (quaternion x, y, z, w, then position), "
                        f"got shape {poses.shape}; export the recording again")
    if not (np.isfinite(k[0, 0]) and k[0, 0] > 0 and w > 0 and h > 0):
        raise UserError(f"{path}: K's focal length and w, h must be positive; export the recording again")
    return poses, float(k[0, 0]), w, h


def read_record3d(root: Path, downscale: int | str = 1) -> Capture:
    """The frames of a Record3D export at root (at most MAX_FRAMES, evenly spread), their images
    placed for `downscale` ("auto": images.auto_downscale of the frames' size)."""
    root = Path(root)
    layout = _layout(root)
    if layout is None:
        raise UserError(f"{root}: no metadata.json and rgb/ (a Record3D export) or metadata and rgbd/ (a .r3d "
                        "unzipped); point --data.path at the folder Record3D exported")
    meta, folder = layout
    poses, focal, w, h = _metadata(meta)
    files = sorted((p for p in folder.iterdir() if p.stem.isdigit() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: int(p.stem))
    beyond = [p for p in files if int(p.stem) >= len(poses)]
    if beyond:
        raise UserError(f"{folder}: frame {beyond[0].name} has no pose ({meta.name} holds {len(poses)}); "
                        "export the recording from Record3D again")
    if not files:
        raise UserError(f"{folder}: no frames (0.jpg, 1.jpg, ...); export the recording with its RGB frames")
    if len(files) > MAX_FRAMES:
        keep = np.round(np.linspace(0, len(files) - 1, MAX_FRAMES)).astype(int)
        warn(f"{root}: {len(files)} frames; reading {MAX_FRAMES} evenly spread (nerfstudio's max_dataset_size)")
        files = [files[i] for i in keep]
    if downscale == "auto":
        downscale = auto_downscale([(w, h)], str(meta))
    rot = qvec_to_rotation(poses[:, [3, 0, 1, 2]])  # (x, y, z, w) -> COLMAP's (w, x, y, z)
    frames = []
    for p in files:
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rot[int(p.stem)], poses[int(p.stem), 4:]
        file, factor = at_scale(folder, p.name, downscale)
        frames.append(Frame(file=file, factor=factor, c2w=c2w, intrinsics=(focal, focal, w / 2, h / 2, w, h),
                            name=p.name))
    return Capture(source=meta, frames=frames, downscale=downscale)
