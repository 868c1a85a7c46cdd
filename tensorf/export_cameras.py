"""Export a run's cameras, the poses training ended with, for other tools or for training here
again: a nerfstudio transforms.json (nerfstudio, instant-ngp), or a COLMAP scene folder (3D
Gaussian splatting, gsplat), with the run's point cloud as its points.

    python -m tensorf.export_cameras --run-dir RUN [--output RUN/transforms.json] [--frame capture|run]
    python -m tensorf.export_points --run-dir RUN && python -m tensorf.export_cameras --run-dir RUN --format colmap

Every training and eval view is written with its image file, its intrinsics at that file's size
and its lens. With --camera-opt, the training views carry the poses training refined (their common
drift taken out in the capture's frame, as the point and mesh exports take it out, so the three
overlay); the eval views keep the poses they were given. The split goes into
train_filenames / test_filenames (or val_filenames), so a run on the exported file holds out the
same views. Point --data.path at the file's folder to train on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Literal

import numpy as np

from tensorf import command
from tensorf.data import colmap
from tensorf.data.cameras import Cameras
from tensorf.data.lens import PARAMS
from tensorf.errors import UserError, warn
from tensorf.run import camera_drift, field_to_capture, frame_name, load_cameras, load_config

# Our lens models -> nerfstudio's camera_model (tensorf.data.nerfstudio reads them back).
CAMERA_MODELS = {"pinhole": "OPENCV", "opencv": "OPENCV", "fisheye": "OPENCV_FISHEYE",
                 "equirectangular": "EQUIRECTANGULAR"}
INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


@dataclasses.dataclass(frozen=True)
class ExportCamerasArgs:
    """A trained run's cameras (refined, with --camera-opt) as a nerfstudio transforms.json."""

    run_dir: Path
    """Run directory written by train_lego.py."""
    format: Literal["nerfstudio", "colmap"] = "nerfstudio"
    """nerfstudio: a transforms.json (nerfstudio, instant-ngp, this project). colmap: a COLMAP scene
    folder, sparse/0/ (cameras, images, points3D .bin) and images/ (links to the photos), which
    3D Gaussian splatting (graphdeco-inria), gsplat and this project read."""
    output: Path | None = None
    """What to write: the transforms.json (default RUN/transforms.json; its file paths are relative
    to its folder), or the COLMAP scene folder (default RUN/colmap)."""
    points: Path | None = None
    """colmap: a PLY whose coloured points become points3D (splatting starts its Gaussians from
    them). Default: RUN/points.ply when tensorf.export_points wrote it in the same --frame."""
    frame: Literal["capture", "run"] = "capture"
    """Coordinates written: the capture's own (the COLMAP model's, the Metashape chunk's, the
    transforms.json's or poses_bounds.npy's world, as RUN/dataparser_transforms.json maps them),
    where the poses overlay the capture's and the exported points and mesh; or the run's
    normalised frame (run), where the field lies."""


@dataclasses.dataclass(frozen=True)
class PosedViews:
    """Cameras (poses in the frame being written) and the image file each was read from."""

    cameras: Cameras
    files: list[Path]


def _recorded(run_dir: Path) -> tuple[dict, dict | None, str]:
    """RUN/cameras.json's training cameras (with their files), its eval views (or None when the
    run recorded none) and the eval split's name; a run trained before the files were recorded
    reads them from its dataset."""
    path = Path(run_dir) / "cameras.json"
    if not path.is_file():
        raise UserError(f"{path} not found; the run directory is incomplete (train it with train_lego.py)")
    body = json.loads(path.read_text())
    if "files" in body:
        held = body.get("eval")
        return body, held if held and "files" in held else None, (held or {}).get("split", "test")
    cfg = load_config(run_dir)
    if not Path(cfg.data.path).is_dir():
        raise UserError(f"{path} names no image files (a run trained before they were recorded) and its dataset "
                        f"{cfg.data.path} is not there to read them from; give the run's data back at that path")
    from tensorf.data.dataset import load_dataset

    data = load_dataset(cfg.data)
    train = {**body, "files": [str(f) for f in data.train.files]}
    held = {**data.eval.cameras.to_json(), "files": [str(f) for f in data.eval.files]}
    return train, held, data.eval_split


def _similar(m: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Poses c2w (N, 4, 4) moved by the similarity m (4, 4), kept rigid: the scale goes into the
    positions only."""
    out = m @ np.asarray(c2w, np.float64)
    out[:, :3, :3] /= np.cbrt(np.linalg.det(m[:3, :3]))
    return out


def _file_scale(file: Path, width: int, height: int) -> tuple[float, float, int, int] | None:
    """(sx, sy, w, h): the factors from a camera of width x height to its image file, and the file's
    size as the camera sees it (a photo stored sideways with an EXIF orientation: turned); an
    integer factor when the training size is the file's floor-divided by one. None: the file
    cannot be read."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            fw, fh = im.size
    except Exception:
        return None
    # Stored sideways or not: the side order that matches the camera's aspect.
    if abs(fh / fw - width / height) < abs(fw / fh - width / height):
        fw, fh = fh, fw
    s = round(fw / width)
    if s >= 1 and fw // s == width and fh // s == height:
        return float(s), float(s), fw, fh
    return fw / width, fh / height, fw, fh


def frames(views: PosedViews, folder: Path, corners: bool) -> list[dict]:
    """One nerfstudio frame per view: its file relative to `folder`, its pose (OpenGL axes) and
    its intrinsics at the file's size (corners: the run cast rays through pixel corners, its
    principal points half a pixel off the capture's)."""
    cams = views.cameras
    shift = 0.5 if corners else 0.0
    out, unread = [], []
    for i, file in enumerate(views.files):
        w, h = int(cams.width[i]), int(cams.height[i])
        scale = _file_scale(file, w, h)
        if scale is None:
            unread.append(file)
            scale = (1.0, 1.0, w, h)
        sx, sy, fw, fh = scale
        # nerfstudio's panorama focal lengths are pi times ours (tensorf.data.nerfstudio._panorama).
        unit = math.pi if cams.model == "equirectangular" else 1.0
        frame = {"file_path": os.path.relpath(file, folder), "transform_matrix": np.round(cams.c2w[i], 9).tolist(),
                 "fl_x": float(cams.fx[i]) * sx * unit, "fl_y": float(cams.fy[i]) * sy * unit,
                 "cx": (float(cams.cx[i]) - shift) * sx, "cy": (float(cams.cy[i]) - shift) * sy, "w": fw, "h": fh}
        if cams.model in ("opencv", "fisheye"):
            frame.update(zip(PARAMS, np.asarray(cams.distortion[i], np.float64).tolist()))
        out.append(frame)
    if unread:
        warn(f"{len(unread)} image file(s) could not be read (first: {unread[0]}); their intrinsics are written at the "
             "size training read them")
    return out


def transforms_json(train: PosedViews, held: PosedViews | None, split: str, folder: Path, corners: bool) -> dict:
    """The nerfstudio transforms.json body: camera_model and the intrinsics every frame shares at
    the top, the rest per frame, and the split lists."""
    model = train.cameras.model
    listed = frames(train, folder, corners)
    held_frames = [] if held is None else frames(held, folder, corners)
    every = listed + held_frames
    body: dict = {"camera_model": CAMERA_MODELS[model]}
    if model == "opencv" and any(f["k4"] != 0.0 for f in every):
        # nerfstudio's OPENCV has no r^8 term, and its readers (this project's too) refuse a k4 there.
        warn("the lens has an r^8 term (k4, Metashape's), which nerfstudio's OPENCV model does not hold; it is left "
             "out")
        for f in every:
            f["k4"] = 0.0
    keys = INTRINSICS + (PARAMS if model in ("opencv", "fisheye") else ())
    for key in keys:
        if len({f[key] for f in every}) == 1:
            body[key] = every[0][key]
            for f in every:
                del f[key]
    body["frames"] = every
    body["train_filenames"] = [f["file_path"] for f in listed]
    if held_frames:
        body[f"{'val' if split == 'val' else 'test'}_filenames"] = [f["file_path"] for f in held_frames]
    return body


def posed_views(run_dir: Path, frame: str) -> tuple[PosedViews, PosedViews | None, str, str]:
    """The training views (refined when the run refined them) and eval views in `frame`, the eval
    split's name, and which coordinates they are in."""
    train, held, split = _recorded(run_dir)
    given = Cameras.from_json(train)
    drift = camera_drift(run_dir)
    refined = given.c2w if drift is None else load_cameras(run_dir, name="cameras_refined.json").c2w
    # The field follows the refined training cameras, and the eval views are carried with their
    # common drift (tensorf.training.cameras.carried); in the capture's frame that drift is taken
    # out again (tensorf.run.field_to_capture), which leaves the eval views as they were given.
    to_field = field_to_capture(run_dir) if frame == "capture" else None
    to_field = np.eye(4) if to_field is None else to_field
    for_eval = to_field if drift is None else to_field @ drift
    train_views = PosedViews(dataclasses.replace(given, c2w=_similar(to_field, refined)),
                             [Path(f) for f in train["files"]])
    held_views = None
    if held is not None:
        cams = Cameras.from_json(held)
        held_views = PosedViews(dataclasses.replace(cams, c2w=_similar(for_eval, cams.c2w)),
                                [Path(f) for f in held["files"]])
    return train_views, held_views, split, frame_name(run_dir, frame)


def colmap_camera(frame: dict, model: str) -> tuple[str, tuple[float, ...]]:
    """COLMAP's camera model and parameters for a frame's intrinsics and lens (tensorf.data.colmap.lens_of
    reads them back)."""
    k = (frame["fl_x"], frame["fl_y"], frame["cx"], frame["cy"])
    if model == "pinhole":
        return "PINHOLE", k
    k1, k2, k3, k4, p1, p2 = (frame[name] for name in PARAMS)
    if model == "fisheye":
        return "OPENCV_FISHEYE", (*k, k1, k2, k3, k4)
    if k3 == 0.0 and k4 == 0.0:
        return "OPENCV", (*k, k1, k2, p1, p2)
    # FULL_OPENCV's k4..k6 are rational terms, not an r^8 term: ours has no place there.
    return "FULL_OPENCV", (*k, k1, k2, p1, p2, k3, 0.0, 0.0, 0.0)


def colmap_model(views: list[PosedViews], corners: bool) -> tuple[colmap.Model, dict[str, Path]]:
    """The views as a COLMAP model (one camera per distinct intrinsics, size and lens; poses in
    the frame given, as COLMAP's world) and each image's name -> file. Names are the files' paths
    below the folder they all share, so a Blender scene's train/r_0.png and test/r_0.png stay two."""
    files = [Path(f).resolve() for v in views for f in v.files]
    root = Path(os.path.commonpath([f.parent for f in files]))
    cameras: dict[tuple, int] = {}
    images, named, dropped = {}, {}, 0
    for v in views:
        for frame, c2w in zip(frames(v, root, corners), v.cameras.c2w):
            model, params = colmap_camera(frame, v.cameras.model)
            dropped += v.cameras.model == "opencv" and frame["k4"] != 0.0
            cid = cameras.setdefault((model, frame["w"], frame["h"], params), len(cameras) + 1)
            name = Path(frame["file_path"]).as_posix()
            # colmap_image takes nerfstudio's world; the frame given is to be COLMAP's own.
            images[len(images) + 1] = colmap.colmap_image(colmap.WORLD @ np.asarray(c2w, np.float64), cid, name)
            named[name] = root / frame["file_path"]
    if dropped:
        warn(f"{dropped} view(s) have a lens with an r^8 term (k4, Metashape's), which no COLMAP camera model holds; "
             "it is left out")
    cams = {cid: colmap.Camera(model, w, h, params) for (model, w, h, params), cid in cameras.items()}
    return colmap.Model(cams, images, np.zeros((0, 3))), named


def _points(args: ExportCamerasArgs) -> tuple[np.ndarray, np.ndarray, str]:
    """points3D (P, 3) and colours (P, 3) uint8 for a COLMAP export, and where they came from."""
    from tensorf.data.points import read_ply
    from tensorf.export_mesh import frame_comment

    path = args.points or Path(args.run_dir) / "points.ply"
    if args.points is None and not path.is_file():
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8), "no points (run tensorf.export_points first for them)"
    xyz, colors, comments = read_ply(path)
    written = [c for c in comments if c.startswith(frame_comment(""))]
    if written and written[0] != frame_comment(args.frame):
        other = written[0].split()[-1]
        if args.points is not None:
            raise UserError(f"{path} was exported with --frame {other}; export the cameras with --frame {other}, or "
                            f"the points with --frame {args.frame}")
        warn(f"{path} was exported with --frame {other}, not {args.frame}: points3D left empty")
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8), "no points"
    colors = np.full((len(xyz), 3), 128, np.uint8) if colors is None else colors
    return xyz, colors, f"{len(xyz)} points from {path}"


def _link(target: Path, link: Path) -> None:
    """link -> target, a copy where links cannot be made."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        link.symlink_to(target)
    except OSError:
        shutil.copyfile(target, link)


def main(args: ExportCamerasArgs) -> Path:
    cfg = load_config(args.run_dir)
    train, held, split, coordinates = posed_views(args.run_dir, args.frame)
    refined = (Path(args.run_dir) / "cameras_refined.json").is_file()
    counts = (f"{len(train.files)} training views ({'as refined' if refined else 'as given'}) and "
              f"{0 if held is None else len(held.files)} {split} views")
    if args.format == "colmap":
        if train.cameras.model == "equirectangular":
            raise UserError("COLMAP has no camera model for equirectangular panoramas; export them with --format "
                            "nerfstudio")
        out = args.output or Path(args.run_dir) / "colmap"
        model, named = colmap_model([train] + ([] if held is None else [held]), corners=not cfg.data.pixel_centers)
        xyz, colors, where = _points(args)
        try:
            colmap.write_model(out / "sparse" / "0", dataclasses.replace(model, points=xyz, colors=colors))
            for name, file in named.items():
                _link(file, out / "images" / name)
        except OSError as e:
            raise UserError(f"{out}: cannot write the COLMAP scene ({e.strerror}); pick another --output") from None
        print(f"{out}: a COLMAP scene of {counts} ({len(model.cameras)} camera(s)), {where}; {coordinates}")
        return out
    out = args.output or Path(args.run_dir) / "transforms.json"
    body = transforms_json(train, held, split, out.parent.resolve(), corners=not cfg.data.pixel_centers)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(body, indent=1))
    except OSError as e:
        raise UserError(f"{out}: cannot write it ({e.strerror}); pick another --output") from None
    print(f"{out}: {counts}; {coordinates}")
    return out


def cli(argv: list[str] | None = None) -> None:
    """The command line: one `error:` line and exit status 2 for a UserError."""
    command.run(main, ExportCamerasArgs, argv)


if __name__ == "__main__":
    cli()
