"""The live viewer's frame time, and how much it slows training, on a trained lego-cpu run.

    python benchmarks/viewer_cpu.py --run-dir RUN [--resolution 200] [--seconds 30]

RUN is a trained lego run (benchmarks/lego_cpu.py). Prints and appends to results.md:
- frame: the median time the viewer takes to render one full-resolution view (resolution^2
  pixels, from training cameras, server side);
- train steps/s of the run's own step (its final grid, mask and budgets; batches drawn on the
  device, steps queued back to back as the training loop does) for --seconds each: with no viewer;
  with the viewer serving a headless Chromium tab whose camera stays still while the parameters
  are published every 100 steps (what `train_lego.py --viewer` does); and with that tab's camera
  being dragged around the scene the whole time.
`--no-browser` measures the frame time only (a machine without Chromium, e.g. a GPU lease):
`python benchmarks/viewer_cpu.py --run-dir RUN --resolution 800 --no-browser`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import lego_state  # noqa: E402
from common import DEFAULT_LEGO, ROOT, add_rows  # noqa: E402
from tensorf.errors import UserError, exit_on_user_error  # noqa: E402
from tensorf.parallel import make_mesh, replicate  # noqa: E402
from tensorf.run import load_cameras, load_config  # noqa: E402
from tensorf.training.optimizer import lrs_at  # noqa: E402
from tensorf.training.step import initial_totals, make_train_step  # noqa: E402
from tensorf.viewer.cameras import vertical_fov, view_camera, viser_pose  # noqa: E402
from tensorf.viewer.headless import find_chromium, launch  # noqa: E402
from tensorf.viewer.renderer import Snapshot  # noqa: E402
from tensorf.viewer.server import Viewer  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Viewer frame time and train-step slowdown with the viewer open."""

    run_dir: Path = Path("runs/lego_cpu")
    """Trained lego run (benchmarks/lego_cpu.py)."""
    dataset_path: Path = DEFAULT_LEGO
    """Blender-format lego folder (its train split feeds the timed steps)."""
    resolution: int = 200
    """Side of the square views timed, and the viewer's full resolution."""
    seconds: float = 30.0
    """Training time measured in each condition."""
    publish_every: int = 100
    """Steps between parameter snapshots, as --viewer-every."""
    port: int = 0
    """Port of the viewer page (0: any free one)."""
    browser: bool = True
    """Also measure training with a headless Chromium tab open (--no-browser: the frame time only)."""
    results: Path = ROOT / "benchmarks" / "results.md"


class _Steps:
    """The run's train step, compiled once, run in timed windows."""

    def __init__(self, st: lego_state.LegoState):
        cfg = st.cfg
        self.model = st.model
        self.mesh = make_mesh(1, cfg.batch_size)
        fn = make_train_step(st.model, st.tx, functools.partial(lrs_at, cfg), cfg.batch_size, self.mesh)
        prm = jax.tree.map(jnp.array, st.params)
        self.state = list(replicate(self.mesh, (prm, st.tx.init(prm), initial_totals(), None, None)))
        self.pool, self.key, self.count = replicate(self.mesh, (st.pool, jax.random.key(0), np.int32(0)))
        self.step = fn.lower(*self.state, self.pool, self.count, None, self.key).compile()
        self.done = 0

    def run(self, seconds: float, viewer: Viewer | None = None, every: int = 100) -> float:
        """Steps per second over `seconds`, publishing to viewer every `every` steps."""
        jax.block_until_ready(self.state)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            *self.state, self.count, stats = self.step(*self.state, self.pool, self.count, None, self.key)
            n += 1
            self.done += 1
            if viewer is not None and self.done % every == 0:
                viewer.publish(self.model, self.state[0], self.done)
            if n % 10 == 0:  # the loop's own pace: it waits at each log step
                jax.block_until_ready(stats)
        jax.block_until_ready(self.state)
        return n / (time.perf_counter() - t0)


def _browse(url: str, executable: str, moving: threading.Event, stop: threading.Event, ready: threading.Event):
    """A headless tab on the viewer: still, or (while `moving` is set) orbiting with mouse drags."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, executable)
        page = browser.new_page(viewport={"width": 800, "height": 600})
        page.goto(url)
        ready.set()
        sign = 1
        while not stop.is_set():
            if not moving.is_set():
                time.sleep(0.05)
                continue
            page.mouse.move(250, 300)
            page.mouse.down()
            page.mouse.move(250 + sign * 120, 300, steps=12)
            page.mouse.up()
            sign = -sign
        browser.close()


def main(args: Args) -> None:
    if not (args.run_dir / "checkpoints").is_dir():
        raise UserError(f"{args.run_dir} holds no trained run; train one with python benchmarks/lego_cpu.py "
                        f"--run-dir {args.run_dir}")
    executable = find_chromium() if args.browser else None
    if args.browser and executable is None:
        raise UserError("no Chromium found; apt-get install chromium (and pip install playwright), or give --no-browser")
    saved = load_config(args.run_dir)
    st = lego_state.load(args.run_dir, args.dataset_path, saved.batch_size, saved.model.max_samples)
    cams = load_cameras(args.run_dir, st.cfg)
    viewer = Viewer(args.run_dir, cams, Snapshot.take(st.model, st.params, 0), port=args.port, training=True,
                    update_every=args.publish_every, resolution=args.resolution)
    try:
        frame_ms = []
        for i in range(0, len(cams), max(1, len(cams) // 8)):
            camera = view_camera(*viser_pose(cams.c2w[i]), vertical_fov(cams, i), args.resolution, args.resolution)
            t0 = time.perf_counter()
            viewer.render(camera)
            frame_ms.append(1e3 * (time.perf_counter() - t0))
        frame = float(np.median(frame_ms[1:]))  # the first compiles
        print(f"frame {args.resolution}x{args.resolution}: {frame:.0f} ms (median of {len(frame_ms) - 1})")
        if not args.browser:
            return

        steps = _Steps(st)
        steps.run(3.0)  # warm-up
        rates = {"none": steps.run(args.seconds)}
        moving, stop, ready = threading.Event(), threading.Event(), threading.Event()
        tab = threading.Thread(target=_browse, args=(viewer.url, executable, moving, stop, ready), daemon=True)
        tab.start()
        ready.wait(60)
        time.sleep(10.0)  # the tab's first renders (and their compile) are not what is measured
        rates["idle"] = steps.run(args.seconds, viewer, args.publish_every)
        moving.set()
        rates["moving"] = steps.run(args.seconds, viewer, args.publish_every)
        stop.set()
        tab.join(30)
    finally:
        viewer.close()
    slow = {k: 100 * (1 - rates[k] / rates["none"]) for k in ("idle", "moving")}
    print(f"train steps/s: no viewer {rates['none']:.2f}, tab open and still {rates['idle']:.2f} "
          f"({slow['idle']:+.1f}% slower), tab orbiting {rates['moving']:.2f} ({slow['moving']:+.1f}% slower)")
    grid = "x".join(map(str, st.meta["model_state"]["resolution"]))
    add_rows(
        args.results,
        "## viewer_cpu.py (live viewer on a lego-cpu run, 2-core CPU)",
        "| date | grid | frame ms (full res) | train steps/s, no viewer | tab still | tab orbiting "
        "| slowdown still / orbiting |\n"
        "|---|---|---|---|---|---|---|",
        [f"| {datetime.date.today()} | {grid} | {frame:.0f} ({args.resolution}x{args.resolution}) | "
         f"{rates['none']:.2f} | {rates['idle']:.2f} | {rates['moving']:.2f} | "
         f"{slow['idle']:.1f}% / {slow['moving']:.1f}% |"],
    )


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
