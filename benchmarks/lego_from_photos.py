"""lego posed from its own photos against its true poses: what the photos -> poses path
(`python -m tensorf.poses`, pycolmap) costs, on the one real scene whose cameras are known exactly.

    python benchmarks/lego_from_photos.py [--steps 3000] [--run-root runs/lego_photos]
        [--flags="--camera-opt.mode SO3xR3"]        # more train_lego.py options, for the posed capture
        [--poses-flags="--camera-model PINHOLE"]    # more tensorf.poses options

Two captures of lego's 100 train renders, each holding out every 8th in name order (the same 13):
RUN_ROOT/true-capture, a transforms.json of the renders' own poses and focal length, and
RUN_ROOT/photos-capture, what `tensorf.poses` recovers from the renders alone. The true capture
gets the recovered points too, moved into its frame, so that both fit their boxes to the same
points and what differs is the cameras (as tests/test_poses.py compares them). Prints the recovered
cameras' errors (positions after a similarity fit; pairwise relative rotations, which need no fit;
the focal length), trains `--preset lego-cpu` on each at 200x200 into RUN_ROOT/true and
RUN_ROOT/photos, and appends a row for each to benchmarks/results.md (captures_cpu.py's table).
A finished run (RUN/eval/test_metrics.json) or a posed capture is reused, not made again.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from captures_cpu import HEADER, SECTION  # noqa: E402
from common import DEFAULT_LEGO, ROOT, add_rows  # noqa: E402
from tensorf.checkpoint import Checkpointer  # noqa: E402
from tensorf.data import colmap  # noqa: E402
from tensorf.errors import UserError, exit_on_user_error  # noqa: E402
from tensorf.export_mesh import write_ply  # noqa: E402
from tensorf.training.cameras import similarity  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """lego's train renders: trained on their true poses and on the poses tensorf.poses recovers."""

    lego: Path = DEFAULT_LEGO
    """The Blender-format lego folder (its train split is used)."""
    run_root: Path = Path("runs/lego_photos")
    """Where the two captures and the two runs go."""
    steps: int = 3000
    """Training steps of each run."""
    flags: str = ""
    """More train_lego.py options for the posed capture's run, as one string; shown in its row."""
    poses_flags: str = ""
    """More `tensorf.poses` options, as one string; shown in the posed row's command."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the rows are appended to."""


def true_cameras(lego: Path) -> tuple[dict[str, np.ndarray], float]:
    """The train renders' c2w (4, 4) by file name, and their focal length in pixels (800x800)."""
    meta = json.loads((lego / "transforms_train.json").read_text())
    poses = {Path(f["file_path"]).name + ".png": np.asarray(f["transform_matrix"]) for f in meta["frames"]}
    return poses, 400.0 / math.tan(meta["camera_angle_x"] / 2)


def write_true_capture(lego: Path, out: Path) -> Path:
    """lego's train renders (linked) and their poses as a nerfstudio transforms.json, in name order."""
    poses, focal = true_cameras(lego)
    (out / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for name in sorted(poses):
        link = out / "images" / name
        if not link.exists():
            link.symlink_to((lego / "train" / name).resolve())
        frames.append({"file_path": f"images/{name}", "transform_matrix": poses[name].tolist()})
    (out / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "fl_x": focal, "fl_y": focal,
                                                     "cx": 400.0, "cy": 400.0, "w": 800, "h": 800,
                                                     "frames": frames}, indent=1))
    return out


def compare_cameras(lego: Path, capture: Path, true_capture: Path) -> str:
    """The recovered cameras against the renders' own, in one line; writes the recovered points,
    moved into the true frame, as true_capture's ply."""
    truth, focal = true_cameras(lego)
    model = colmap.read_model(capture / "sparse" / "0")
    got = {im.name: colmap.opengl_c2w(im) for im in model.images.values()}
    names = sorted(got)
    src, dst = np.stack([got[n][:3, 3] for n in names]), np.stack([truth[n][:3, 3] for n in names])
    s, r, t = similarity(src, dst)
    off = np.linalg.norm(s * src @ r.T + t - dst, axis=1)
    colors = np.full((len(model.points), 3), 128, np.uint8) if model.colors is None else model.colors
    write_ply(true_capture / "points.ply", s * colmap.world_points(model.points) @ r.T + t, None, colors)
    transforms = json.loads((true_capture / "transforms.json").read_text())
    (true_capture / "transforms.json").write_text(json.dumps({**transforms, "ply_file_path": "points.ply"}, indent=1))

    def angle(a: np.ndarray) -> float:
        return math.degrees(math.acos(np.clip((np.trace(a) - 1) / 2, -1, 1)))

    rel = np.asarray([angle((got[a][:3, :3].T @ got[b][:3, :3]).T @ (truth[a][:3, :3].T @ truth[b][:3, :3]))
                      for i, a in enumerate(names) for b in names[i + 1:]])
    cams = {c.params[0] for c in model.cameras.values()}
    radius = float(np.linalg.norm(dst, axis=1).mean())
    return (f"{len(names)} of {len(truth)} registered; camera centres {np.median(off):.4f} median, {off.max():.4f} "
            f"max (ring radius {radius:.2f}); relative rotations {np.median(rel):.3f} deg median, "
            f"{np.percentile(rel, 95):.3f} at the 95th percentile; focal {', '.join(f'{f:.1f}' for f in cams)} px "
            f"(true {focal:.1f})")


def train(args: Args, capture: Path, run: Path, flags: str) -> None:
    if (run / "eval" / "test_metrics.json").is_file():
        return
    cmd = [sys.executable, str(ROOT / "train_lego.py"), "--preset", "lego-cpu", "--data.path", str(capture),
           "--data.downscale", "4", "--steps", str(args.steps), "--run-dir", str(run), "--no-progress",
           *shlex.split(flags), *(["--overwrite"] if run.exists() else [])]
    print("==", " ".join(cmd[1:]), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise UserError(f"training on {capture} failed; its output is above")


def row(args: Args, label: str, run: Path, command: str) -> str:
    m = json.loads((run / "eval" / "test_metrics.json").read_text())
    ckpt = Checkpointer(run, read_only=True)
    minutes = ckpt.meta(ckpt.latest_step())["elapsed_s"] / 60
    ckpt.close()
    return (f"| {datetime.date.today()} | {label} | lego-cpu | {args.steps} | 360 | {len(m['views'])} | "
            f"{m['psnr']:.2f} | {m['ssim']:.4f} | {m.get('lpips', float('nan')):.4f} | {minutes:.1f} | `{command}` |")


def main(args: Args) -> None:
    root = args.run_root
    true_capture = write_true_capture(args.lego, root / "true-capture")
    photos = root / "photos-capture"
    if not (photos / "sparse").is_dir():
        subprocess.run([sys.executable, "-m", "tensorf.poses", str(args.lego / "train"), "--out", str(photos),
                        "--overwrite", *shlex.split(args.poses_flags)], check=True)
    errors = compare_cameras(args.lego, photos, true_capture)
    print(errors, flush=True)
    train(args, true_capture, root / "true", "")
    train(args, photos, root / "photos", args.flags)
    train_cmd = f"python train_lego.py --preset lego-cpu --data.downscale 4 --steps {args.steps}"
    poses = f"python -m tensorf.poses LEGO/train --out CAPTURE {args.poses_flags}".rstrip()
    rows = [row(args, "lego's 100 train renders, their true poses (a transforms.json)", root / "true",
                f"python benchmarks/lego_from_photos.py (writes TRUE) && {train_cmd} --data.path TRUE"),
            row(args, f"lego's 100 train renders, poses from the renders ({errors})", root / "photos",
                f"{poses} && {train_cmd} --data.path CAPTURE {args.flags}".rstrip())]
    print("\n".join(rows))
    add_rows(args.results, SECTION, HEADER, rows)


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
