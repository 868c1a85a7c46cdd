"""Train on the real fern capture (LLFF, NDC) for a wall-clock budget, then evaluate its test views.

    python benchmarks/fern_cpu.py [--minutes 20] [--run-dir RUN] [--dataset-path DIR]

The `llff-cpu` preset: images_8 (504x378), every 8th image held out as test (image000, image008,
image016), the official LLFF recipe's shape on a CPU-sized grid. Leaves a normal run in RUN,
writes RUN/eval/test_metrics.json, prints PSNR / SSIM / LPIPS and appends a row to
benchmarks/results.md. Published fern test PSNR (images at factor 4, full training): NeRF 25.17,
JaxNeRF 24.83, TensoRF VM-96 25.27.
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

from common import ROOT, add_rows  # noqa: E402
from tensorf.errors import exit_on_user_error  # noqa: E402
from tensorf.presets import LLFF_CPU  # noqa: E402
from tensorf.training.loop import train  # noqa: E402

DEFAULT_FERN = ROOT.parent / "shared" / "data" / "nerf_llff_data" / "fern"


@dataclasses.dataclass(frozen=True)
class Args:
    """Time-budgeted CPU training on fern (LLFF, images_8, NDC) with test-view evaluation."""

    minutes: float = 20.0
    """Wall-clock training budget; the preset's schedule is stretched to fit it."""
    run_dir: Path = Path("runs/fern_cpu")
    """Run directory to write."""
    dataset_path: Path = DEFAULT_FERN
    """LLFF fern folder (poses_bounds.npy + images_8/)."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown table the result row is appended to."""


def main(args: Args) -> None:
    cfg = dataclasses.replace(LLFF_CPU, run_dir=args.run_dir, time_budget_minutes=args.minutes,
                              data=dataclasses.replace(LLFF_CPU.data, path=args.dataset_path))
    t0 = time.perf_counter()
    result = train(cfg)
    m = result.eval_metrics
    res = "x".join(map(str, result.model_state["resolution"]))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lpips = f"{m['lpips']:.4f} / {m['lpips_alex']:.4f}" if "lpips" in m else "n/a"
    print(f"fern_cpu: {result.steps} steps in {result.elapsed_s / 60:.1f} min, final grid {res}\n"
          f"test (image000, image008, image016): PSNR {m['psnr']:.2f}  SSIM {m['ssim']:.4f}  LPIPS VGG / Alex {lpips}  "
          f"peak RSS {peak_gib:.1f} GiB  total {(time.perf_counter() - t0) / 60:.1f} min")
    add_rows(
        args.results,
        "## fern_cpu.py (fern, LLFF images_8 504x378, NDC, test = every 8th image, 2-core CPU)",
        "| date | minutes | steps | final grid | test PSNR | test SSIM | LPIPS VGG / Alex | peak RSS GiB | "
        "published (factor 4): NeRF / JaxNeRF / TensoRF VM-96 |\n|---|---|---|---|---|---|---|---|---|",
        [f"| {datetime.date.today()} | {args.minutes:g} | {result.steps} | {res} | {m['psnr']:.2f} | {m['ssim']:.4f} | "
         f"{lpips} | {peak_gib:.1f} | 25.17 / 24.83 / 25.27 |"],
    )


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
