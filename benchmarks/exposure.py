"""Per-photo exposure (--exposure.mode affine) on the generated scene whose training photos were
each taken at their own exposure and white balance (tensorf.data.generated's
vary_exposure: gains averaging 1, so the held-out views, left as rendered, show the
photos' average). Runs at the slow test's sizes (tests/test_exposure.py): the photos as rendered,
then for each spread of exposures: without maps and with each kind (--modes).

    python benchmarks/exposure.py [--size 32] [--steps 300] [--stops 0.5 1.0] [--tint 0.1] [--modes gain affine]

Prints and appends a row per run to benchmarks/results.md: training and held-out PSNR, and how
closely the learned maps' gains follow the ones applied (correlation of the diagonals).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import ROOT, add_rows, short_run_model  # noqa: E402
from tensorf.config import DataConfig, ExposureConfig, TrainConfig  # noqa: E402
from tensorf.data.generated import GenerateConfig, generate, vary_exposure  # noqa: E402
from tensorf.training.loop import train  # noqa: E402

MODEL, BOX = short_run_model()


@dataclasses.dataclass(frozen=True)
class Args:
    """The photos as rendered, then each spread of exposures without and with the maps."""

    size: int = 32
    """Image size of the generated scene (square)."""
    steps: int = 300
    """Training steps per run."""
    stops: tuple[float, ...] = (0.5, 1.0)
    """Spreads of exposure: each photo's gain 2^u, u uniform within this many stops either way."""
    tint: float = 0.1
    """...times a per-channel white balance factor within this fraction either way."""
    modes: tuple[str, ...] = ("gain", "affine")
    """--exposure.mode values to run beside off."""
    lr: float = 1e-3
    """--exposure.lr (its final rate a tenth of it)."""
    run_root: Path = Path("runs/exposure_bench")
    """Runs go to RUN_ROOT/<name>; the scenes to RUN_ROOT/scene and RUN_ROOT/stops_<s>."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the rows are appended to."""


def main(args: Args) -> None:
    scene = args.run_root / "scene"
    if not (scene / "transforms_train.json").is_file():
        generate(GenerateConfig(out=scene, size=args.size, n_train=24, n_val=4, n_test=4))
    runs = [("photos as rendered", scene, 0.0, "off", None)]
    for stops in args.stops:
        varied = args.run_root / f"stops_{stops:g}"
        shutil.rmtree(varied, ignore_errors=True)
        shutil.copytree(scene, varied)
        applied = vary_exposure(varied, stops, args.tint)
        runs += [(f"within {stops:g} stops, no maps", varied, stops, "off", None)]
        runs += [(f"within {stops:g} stops, maps (--exposure.mode {m})", varied, stops, m, applied) for m in args.modes]
    rows = []
    for name, data, stops, mode, applied in runs:
        run = args.run_root / (name.split(" (")[0].replace(" ", "_").replace(",", "") + f"_{mode}")
        cfg = TrainConfig(run_dir=run, steps=args.steps, batch_size=512, log_every=100, eval_every=0, checkpoint_every=0,
                          render_chunk=1024, eval_lpips=False, progress=False, data=DataConfig(path=data, aabb=BOX),
                          model=MODEL, exposure=ExposureConfig(mode=mode, lr=args.lr, lr_final=args.lr / 10))
        t0 = time.perf_counter()
        result = train(cfg, overwrite=True)
        minutes = (time.perf_counter() - t0) / 60
        follow = "-"
        if applied is not None:
            learned = np.asarray(json.loads((run / "exposure.json").read_text())["maps"])
            diagonal = lambda m: np.diagonal(m[..., :3], axis1=1, axis2=2).ravel()  # noqa: E731
            follow = f"{np.corrcoef(diagonal(learned), diagonal(applied))[0, 1]:.3f}"
        rate = f"{args.lr:g}" if mode != "off" else "-"
        rows.append(f"| {datetime.date.today()} | {name} | {args.size} | {stops:g} / {args.tint if stops else 0:g} | "
                    f"{args.steps} | {rate} | {result.train_psnr:.2f} | {result.eval_metrics['psnr']:.2f} | {follow} | "
                    f"{minutes:.1f} |")
        print(rows[-1], flush=True)
    add_rows(
        args.results,
        "## exposure.py (generated scene, training photos at varied exposures, held-out views at their average, 2-core CPU)",
        "| date | run | size | spread (stops / tint) | steps | exposure lr | train PSNR | test PSNR | "
        "gains' correlation with the applied | minutes (with eval) |\n|---|---|---|---|---|---|---|---|---|---|",
        rows,
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
