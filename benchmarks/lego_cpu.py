"""Train on the real lego views at 200x200 for a wall-clock budget, then evaluate val views.

    python benchmarks/lego_cpu.py [--minutes 20] [--run-dir RUN] [--dataset-path DIR]

Leaves a normal run in RUN (config, checkpoints, TensorBoard logs), evaluates val views
r_0, r_10, ..., r_90 into RUN/eval/val_metrics.json, prints rays/s, steps, PSNR/SSIM and peak
memory, and appends a row to benchmarks/results.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import resource
import sys
import time
from pathlib import Path

import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import DEFAULT_LEGO, ROOT, add_rows  # noqa: E402
from tensorf.errors import exit_on_user_error  # noqa: E402
from tensorf.presets import LEGO_CPU  # noqa: E402
from tensorf.training.loop import train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Time-budgeted CPU training on lego (train split, downscale 4) with val evaluation."""

    minutes: float = 20.0
    """Wall-clock training budget; the preset's schedule is stretched to fit it."""
    run_dir: Path = Path("runs/lego_cpu")
    """Run directory to write."""
    dataset_path: Path = DEFAULT_LEGO
    """Blender-format lego folder (train and val splits)."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown table the result row is appended to."""


def main(args: Args) -> None:
    # Val r_0, r_10, ..., r_90 are evaluated at the end of training (RUN/eval/val_metrics.json).
    cfg = dataclasses.replace(
        LEGO_CPU,
        run_dir=args.run_dir,
        time_budget_minutes=args.minutes,
        data=dataclasses.replace(LEGO_CPU.data, path=args.dataset_path, eval_views=tuple(range(0, 100, 10))),
    )
    t0 = time.perf_counter()
    result = train(cfg)
    metrics = result.eval_metrics
    res = "x".join(map(str, result.model_state["resolution"]))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    total_min = (time.perf_counter() - t0) / 60
    print(
        f"lego_cpu: {result.steps} steps in {result.elapsed_s / 60:.1f} min, "
        f"{result.rays_per_s:.0f} train rays/s (last window), final grid {res}\n"
        f"val (r_0, r_10, ..., r_90): PSNR {metrics['psnr']:.2f}  SSIM {metrics['ssim']:.4f}  "
        f"peak RSS {peak_gib:.1f} GiB  total {total_min:.1f} min"
    )
    lpips_note = f"LPIPS {metrics['lpips']:.4f} (VGG), {metrics['lpips_alex']:.4f} (Alex)" if "lpips" in metrics else ""
    print(lpips_note)
    row = (
        f"| {datetime.date.today()} | {args.minutes:g} | {result.steps} | {result.rays_per_s:.0f} | {res} | "
        f"{metrics['psnr']:.2f} | {metrics['ssim']:.4f} | {peak_gib:.1f} | {lpips_note} |"
    )
    add_rows(
        args.results,
        "## lego_cpu.py (lego 200x200 train split, val r_0, r_10, ..., r_90, 2-core CPU)",
        "| date | minutes | steps | train rays/s (last) | final grid | val PSNR | val SSIM | peak RSS GiB | notes |\n"
        "|---|---|---|---|---|---|---|---|---|",
        [row],
    )

if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
