"""Look at a run in the browser: `python -m tensorf.viewer --run-dir RUN`.

A finished run, or one still training: the viewer loads each new checkpoint as it appears. To
watch a run train step by step, train it with `python train_lego.py ... --viewer` instead.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tensorf import command
from tensorf.checkpoint import Checkpointer
from tensorf.errors import UserError, warn
from tensorf.parallel import render_mesh
from tensorf.run import RunLock, load_cameras, restore_run
from tensorf.viewer.renderer import Snapshot


@dataclasses.dataclass(frozen=True)
class ViewerArgs:
    """Serve a web page showing a trained (or training) run from any camera."""

    run_dir: Path
    """Run directory written by train_lego.py."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0: reachable from other machines; or tunnel the port over ssh)."""
    port: int = 8080
    """Port to serve on (the next free one when taken; the address is printed)."""
    step: int | None = None
    """Checkpoint step to show (default: the latest, following new ones as training writes them)."""
    best: bool = False
    """Show the checkpoint --keep-best kept instead."""
    resolution: int | None = None
    """Longer side of the full-resolution render in pixels (default: the training images', at most 1024)."""
    chunk: int = 4096
    """Rays per render call: smaller follows camera moves sooner, larger renders faster."""
    reload_every_s: float = 10.0
    """How often to look for a newer checkpoint (0: never)."""


def open_viewer(args: ViewerArgs):
    """The Viewer of args.run_dir, serving (close() it when done)."""
    from tensorf.viewer.server import Viewer

    cfg, model, params, meta = restore_run(args.run_dir, args.step, args.best)
    mesh = render_mesh()
    return Viewer(args.run_dir, load_cameras(args.run_dir, cfg), Snapshot.take(model, params, int(meta["step"]), mesh),
                  host=args.host, port=args.port, chunk=args.chunk, mesh=mesh, resolution=args.resolution)


def _latest_step(run_dir: Path) -> int | None:
    """The newest checkpoint's step (None: none yet, or no checkpoints folder yet)."""
    if not (Path(run_dir) / "checkpoints").is_dir():
        return None
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def serve(args: ViewerArgs) -> None:
    if not Path(args.run_dir).is_dir():
        raise UserError(f"{args.run_dir} not found; give the run directory train_lego.py wrote (--run-dir)")
    if args.step is None and not args.best and RunLock(args.run_dir).taken() and _latest_step(args.run_dir) is None:
        # Started beside a run that has not written its first checkpoint: wait for it.
        print(f"viewer: {args.run_dir} is training and has no checkpoint yet; waiting for its first (Ctrl-C to stop)",
              flush=True)
        try:
            while _latest_step(args.run_dir) is None and RunLock(args.run_dir).taken():
                time.sleep(1.0)
        except KeyboardInterrupt:
            return
    viewer = open_viewer(args)
    shown = viewer.snapshot[0].step
    print(f"viewer of {args.run_dir} (step {shown}) at {viewer.url}  (Ctrl-C to stop)", flush=True)
    follow = args.step is None and not args.best and args.reload_every_s > 0
    try:
        while True:
            time.sleep(args.reload_every_s if follow else 3600.0)
            if not follow:
                continue
            latest = _latest_step(args.run_dir)
            if latest is not None and latest != shown:
                try:
                    _, model, params, meta = restore_run(args.run_dir, latest)
                except Exception as e:  # a checkpoint still being written: try again next time
                    warn(f"viewer: could not load step {latest} yet ({e.__class__.__name__})")
                    continue
                viewer.publish(model, params, int(meta["step"]))
                shown = int(meta["step"])
                print(f"viewer: showing step {shown}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.close()


def cli(argv: list[str] | None = None) -> None:
    """The command line: one `error:` line and exit status 2 for a UserError."""
    command.run(serve, ViewerArgs, argv)


if __name__ == "__main__":
    cli()
