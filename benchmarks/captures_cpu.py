"""Train the real captures users bring (../shared/data/captures: fox, head) as a user would, with
a CPU preset and no flag beyond --data.path, then report held-out PSNR / SSIM / LPIPS.

    python benchmarks/captures_cpu.py [--steps 3000] [--preset lego-cpu] [--run-root runs/captures]
        [--flags="--model.proposal-samples"]  # more train_lego.py options: one string, after =
        [--poses-from-photos]  # first recover the poses from the capture's photos (tensorf.poses)
        [--poses-flags="--turntable auto"]  # more tensorf.poses options, with --poses-from-photos

Each capture trains for a fixed number of steps (so the figure does not depend on the machine's
speed) into RUN_ROOT/<capture>, evaluates every 8th view (held out), renders an orbit GIF into
docs/, and appends a row per capture to benchmarks/results.md. A capture whose run directory
already holds a finished run (RUN/eval/test_metrics.json) is summarised, not trained again.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import ROOT, add_rows  # noqa: E402
from tensorf.checkpoint import Checkpointer  # noqa: E402
from tensorf.errors import UserError, exit_on_user_error  # noqa: E402

CAPTURES = ROOT.parent / "shared" / "data" / "captures"
# The captures' table in results.md (lego_from_photos.py adds its rows to it too).
SECTION = "## captures_cpu.py (real captures, fixed steps, every 8th view held out, 2-core CPU)"
HEADER = ("| date | capture | preset | steps | read as | test views | PSNR | SSIM | LPIPS (VGG) | train minutes "
          "| command |\n|---|---|---|---|---|---|---|---|---|---|---|")


@dataclasses.dataclass(frozen=True)
class Args:
    """Real captures at a fixed step count with a CPU preset."""

    captures: tuple[str, ...] = ("fox", "head")
    """Folders under --captures-dir to train."""
    captures_dir: Path = CAPTURES
    """Where the captures are."""
    steps: int = 3000
    """Training steps per capture."""
    preset: str = "lego-cpu"
    """train_lego.py preset."""
    flags: str = ""
    """More train_lego.py options, as one string (e.g. "--model.proposal-samples", which turns
    unbounded-cpu's proposals off); shown in each row's command."""
    run_root: Path = Path("runs/captures")
    """Each capture's run directory is RUN_ROOT/<capture>."""
    poses_from_photos: bool = False
    """Ignore the capture's poses: recover them from its photos with `python -m tensorf.poses`
    (pycolmap, requirements-poses.txt) into RUN_ROOT/<capture>-photos and train on those, as a
    user with only the photos would."""
    poses_flags: str = ""
    """More `tensorf.poses` options, as one string (e.g. "--turntable auto"); shown in each row's
    command."""
    gif_dir: Path = ROOT / "docs"
    """Where the orbit GIFs go (<capture>_orbit.gif)."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the rows are appended to."""


def photos(folder: Path) -> Path:
    """A capture's photos: images/, else its least downscaled images_<n>/."""
    if (folder / "images").is_dir():
        return folder / "images"
    found = [d for d in folder.glob("images_*") if d.name[7:].isdigit()]
    return min(found, key=lambda d: int(d.name[7:]), default=folder / "images")


def data_path(args: Args, name: str) -> Path:
    return args.run_root / f"{name}-photos" if args.poses_from_photos else args.captures_dir / name


def command(args: Args, name: str) -> list[str]:
    return [sys.executable, str(ROOT / "train_lego.py"), "--preset", args.preset, "--data.path",
            str(data_path(args, name)), "--steps", str(args.steps), "--run-dir", str(args.run_root / name),
            "--no-progress", *shlex.split(args.flags)]


def shown(args: Args, name: str) -> str:
    """The commands as a user in the repository would type them."""
    data = args.captures_dir / name
    if data.resolve().is_relative_to(ROOT.parent):
        data = Path("..") / data.resolve().relative_to(ROOT.parent)
    poses = ""
    if args.poses_from_photos:
        poses = f"python -m tensorf.poses {photos(data)} --out CAPTURE {args.poses_flags}".rstrip() + " && "
        data = Path("CAPTURE")
    return (f"{poses}python train_lego.py --preset {args.preset} --data.path {data} --steps {args.steps} "
            f"{args.flags}").rstrip()


def main(args: Args) -> None:
    rows = []
    for name in args.captures:
        run = args.run_root / name
        metrics_file = run / "eval" / "test_metrics.json"
        wall = None
        if not metrics_file.is_file():
            if args.poses_from_photos and not (data_path(args, name) / "sparse").is_dir():
                subprocess.run([sys.executable, "-m", "tensorf.poses", str(photos(args.captures_dir / name)), "--out",
                                str(data_path(args, name)), "--overwrite", *shlex.split(args.poses_flags)], check=True)
            cmd = command(args, name)
            print("==", " ".join(cmd[1:]), flush=True)
            t0 = time.perf_counter()
            code = subprocess.run(cmd + (["--overwrite"] if run.exists() else [])).returncode
            wall = (time.perf_counter() - t0) / 60
            if code != 0:
                raise UserError(f"training {name} failed with exit status {code}; its output is above")
        m = json.loads(metrics_file.read_text())
        cfg = json.loads((run / "config.json").read_text())
        ckpt = Checkpointer(run, read_only=True)
        train_min = ckpt.meta(ckpt.latest_step())["elapsed_s"] / 60
        ckpt.close()
        gif = args.gif_dir / f"{name}_orbit.gif"
        subprocess.run([sys.executable, str(ROOT / "render_360.py"), "--run-dir", str(run), "--output", str(gif),
                        "--frames", "36", "--resolution", "160", "160", "--no-depth", "--no-opacity"], check=True)
        wall_s = f"{train_min:.1f}" + ("" if wall is None else f" ({wall:.1f} with eval)")
        kind = cfg["data"]["kind"] + (", turntable" if cfg["data"].get("turntable") == "yes" else "")
        label = f"{name} (poses from its photos)" if args.poses_from_photos else name
        rows.append(f"| {datetime.date.today()} | {label} | {args.preset} | {args.steps} | {kind} | "
                    f"{len(m['views'])} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m.get('lpips', float('nan')):.4f} | "
                    f"{wall_s} | `{shown(args, name)}` |")
        print(rows[-1], flush=True)
    add_rows(args.results, SECTION, HEADER, rows)


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
