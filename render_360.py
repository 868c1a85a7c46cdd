"""Render an orbit around a trained scene to a GIF (plus depth and opacity variants).

    python render_360.py --run-dir RUN [--frames 60 --fps 20 --elevation-deg 30 --resolution 200 200]
    python render_360.py --run-dir RUN --camera-path RUN/camera_path.json   # a path made in the viewer

Defaults come from the run's training cameras: orbit centre, up axis, radius, elevation and
image size. Forward-facing captures (LLFF) cannot be orbited: their runs record the dataset's own
spiral path, which is rendered instead (--path). A camera path file (the viewer's "Camera path"
panel writes one; nerfstudio's camera_path.json reads too) gives every frame's pose, field of view,
the size and the frame rate instead. The checkpoint is loaded at its own grid size; rays are
rendered in chunks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from tensorf import command
from tensorf.data.camera_path import read_camera_path
from tensorf.data.cameras import Cameras
from tensorf.data.orbit import depth_range, orbit_from_cameras, orbit_poses
from tensorf.data.rays import Rays
from tensorf.errors import UserError
from tensorf.models.base import trained_box
from tensorf.parallel import all_devices
from tensorf.render import render_rays_chunked
from tensorf.run import load_background, load_cameras, load_render_path, restore_run
from tensorf.visualize import depth_image, to_uint8


@dataclasses.dataclass(frozen=True)
class Render360Args:
    """Render an orbit around a trained run to an animated GIF."""

    run_dir: Path
    """Run directory written by train_lego.py."""
    output: Path | None = None
    """GIF or MP4 to write (default RUN/render_360.gif); the depth and opacity ones go beside it
    (NAME_depth, NAME_opacity). MP4 needs imageio-ffmpeg."""
    path: Literal["auto", "orbit", "dataset"] = "auto"
    """Camera path: an orbit around the training cameras' centre, or the path the dataset
    defines (LLFF: NeRF's spiral, 120 frames); auto takes the dataset's when the run has one."""
    camera_path: Path | None = None
    """A camera path file to render instead of --path (RUN/camera_path.json, saved from the viewer;
    or nerfstudio's camera_path.json, in this run's world frame). GIFs default to
    RUN/<its name>.gif."""
    frames: int = 60
    """Number of frames in one full turn of the orbit."""
    fps: float | None = None
    """Playback frames per second (default 20, or the camera path's)."""
    resolution: tuple[int, int] | None = None
    """Width and height in pixels (default: the training images' size, or the camera path's)."""
    radius: float | None = None
    """Camera distance from the orbit centre (default: mean of the training cameras)."""
    elevation_deg: float | None = None
    """Camera elevation above the orbit plane in degrees (default: mean of the training cameras)."""
    step: int | None = None
    """Checkpoint step to render (default: latest)."""
    best: bool = False
    """Use the checkpoint --keep-best kept (the best val PSNR) instead of --step's."""
    chunk: int = 8192
    """Rays rendered per chunk (bounds memory)."""
    depth: bool = True
    """Also write a depth GIF (expected distance, coloured near to far)."""
    opacity: bool = True
    """Also write an accumulated-opacity GIF."""
    mp4: bool = False
    """Also write MP4 files beside the GIFs (needs imageio-ffmpeg)."""
    progress: bool = True
    """Show a progress bar."""


def render_orbit(args: Render360Args) -> dict[str, Path]:
    default = "render_360" if args.camera_path is None else Path(args.camera_path).stem
    output = args.output or Path(args.run_dir) / f"{default}.gif"
    suffixes = _formats(output, args.mp4)  # before the render: a wrong name is not found out after it
    cfg, model, params, meta = restore_run(args.run_dir, args.step, args.best)
    cams = load_cameras(args.run_dir, cfg)
    dataset_path = load_render_path(args.run_dir)
    if args.path == "dataset" and dataset_path is None:
        raise UserError(f"{args.run_dir}: this run's dataset defines no camera path; use --path orbit")
    if args.path == "orbit" and cams.ndc is not None:
        raise UserError("an orbit leaves the region a forward-facing (NDC) capture can show; use --path dataset")
    mesh = all_devices()  # each frame's chunks are spread over every device
    fps = args.fps or 20.0
    room = None
    if args.camera_path is not None:
        flight = read_camera_path(args.camera_path)
        fps = args.fps or flight.fps
        orbit = Cameras.centered(flight.c2w, flight.width, flight.height, flight.focal(), cams.ndc)
        near, far = _path_depth_range(flight.c2w, trained_box(model, params), cams.ndc is not None)
    elif dataset_path is not None and args.path != "orbit":
        orbit = cams.with_poses(dataset_path)
        box = trained_box(model, params)
        near, far = 0.0, float(np.linalg.norm(box[1] - box[0]))  # distances in the rays' space (NDC)
    else:
        frame = orbit_from_cameras(cams.c2w)
        frame = dataclasses.replace(
            frame,
            radius=frame.radius if args.radius is None else args.radius,
            elevation_deg=frame.elevation_deg if args.elevation_deg is None else args.elevation_deg,
        )
        orbit = cams.with_poses(orbit_poses(frame, args.frames))
        near, far = depth_range(frame.radius, trained_box(model, params))
    if args.resolution:
        orbit = orbit.resized(*args.resolution)
    if args.camera_path is None:
        # A turntable's camera stood still before the room while the object turned: an orbit is
        # what it saw, the object turning in front of the room. A free path shows what the
        # viewer shows, the flat background.
        room = load_background(args.run_dir, (int(orbit.width[0]), int(orbit.height[0])))
        room = None if room is None else room.reshape(-1, 3)

    rgbs, depths, opacities = [], [], []
    for i in tqdm(range(len(orbit)), disable=not args.progress, unit="frame", desc="render_360"):
        o, d, r = orbit.rays(i)
        out = render_rays_chunked(model, params, Rays(origins=o, directions=d, radii=r, background=room), args.chunk,
                                  mesh)
        rgbs.append(to_uint8(out.rgb))
        depths.append(to_uint8(depth_image(out.median_depth, out.opacity, near, far)))
        opacities.append(to_uint8(out.opacity))

    output.parent.mkdir(parents=True, exist_ok=True)
    stacks = {"rgb": rgbs, **({"depth": depths} if args.depth else {}),
              **({"opacity": opacities} if args.opacity else {})}
    written = {}
    for suffix in suffixes:
        for kind, frames in stacks.items():
            path = output.with_name(output.stem + ("" if kind == "rgb" else f"_{kind}") + suffix)
            if suffix == ".gif":
                iio.imwrite(path, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
            else:
                iio.imwrite(path, np.stack(frames), extension=".mp4", fps=fps)
            written[kind if suffix == suffixes[0] else f"{kind}_mp4"] = path
    grid = meta["model_state"].get("resolution")
    print(f"step {meta['step']}" + (f", grid {tuple(grid)}" if grid else "") + ": " + ", ".join(str(p) for p in written.values()))
    return written


def _formats(output: Path, mp4: bool) -> list[str]:
    """The suffixes to write: output's own (.gif or .mp4), and .mp4 too with --mp4."""
    suffix = output.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"--output {output}: give a .gif or an .mp4 file")
    suffixes = list(dict.fromkeys([suffix] + ([".mp4"] if mp4 else [])))
    if ".mp4" in suffixes:
        try:
            import imageio_ffmpeg  # noqa: F401  (imageio's MP4 writer)
        except ImportError:
            raise UserError(f"writing MP4 needs imageio-ffmpeg: pip install imageio-ffmpeg (or --output "
                            f"{output.with_suffix('.gif')})") from None
    return suffixes


def _path_depth_range(c2w: np.ndarray, box: np.ndarray, ndc: bool) -> tuple[float, float]:
    """Depth colouring's range for a free path: as an orbit's at the path's mean distance from the
    box centre (forward-facing runs: the NDC box's diagonal)."""
    if ndc:
        return 0.0, float(np.linalg.norm(box[1] - box[0]))
    distance = float(np.linalg.norm(c2w[:, :3, 3] - np.mean(box, axis=0), axis=-1).mean())
    return depth_range(distance, box)


def cli(argv: list[str] | None = None) -> None:
    """The command line: one `error:` line and exit status 2 for a UserError."""
    command.run(render_orbit, Render360Args, argv)


if __name__ == "__main__":
    cli()
