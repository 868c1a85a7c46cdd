"""Panoramas drawn by solid angle against every pixel alike: a ring of generated 360-degree
cameras (tests/test_panoramas.py's capture at a larger size), the tests' tiny TensoRF, the same
steps and seed each way. Prints, and appends to benchmarks/results.md, the held-out panoramas'
PSNR over their pixels and over the sphere (WS-PSNR: each row's squared error weighted by
cos(latitude), the solid angle its pixels cover).

    python benchmarks/panorama_cpu.py            # the rows of results.md, "panorama_cpu.py"
"""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import sys
import time
from pathlib import Path

import jax
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from common import ROOT, add_rows  # noqa: E402
from tensorf.config import DataConfig, TensoRFConfig, TrainConfig  # noqa: E402
from tensorf.data.dataset import load_dataset  # noqa: E402
from tensorf.data.generated import generate_panorama_capture  # noqa: E402
from tensorf.data.rays import RayPool  # noqa: E402
from tensorf.eval import evaluate_views  # noqa: E402
from tensorf.run import restore_run  # noqa: E402
from tensorf.training.loop import train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Panorama rays drawn by solid angle (the trainer's) against every pixel alike."""

    size: int = 32
    """Panorama height (the width is twice it)."""
    views: int = 24
    """Panoramas in the ring (every 8th held out)."""
    steps: tuple[int, ...] = (300, 1000, 3000)
    """Training lengths, each run both ways."""
    seeds: tuple[int, ...] = (0, 1)
    """Training seeds (the draws, the init), each run both ways."""
    run_root: Path = Path("runs/panorama_bench")
    results: Path = ROOT / "benchmarks" / "results.md"


def judge(run_dir: Path) -> tuple[float, float]:
    """(PSNR, WS-PSNR) of the held-out panoramas, averaged over them (tensorf.eval's)."""
    cfg, model, params, _ = restore_run(run_dir)
    m = evaluate_views(model, params, load_dataset(cfg.data).eval, run_dir, "test", 4096, verbose=False, write=False,
                       with_lpips=False)
    return m["psnr"], m["ws_psnr"]


def main(args: Args) -> None:
    capture = args.run_root / "capture"
    if not (capture / "transforms.json").is_file():
        generate_panorama_capture(capture, size=args.size, n=args.views)
    solid_angle = RayPool._draw_panorama_ids
    rows = []
    for steps in args.steps:
        # conftest's tiny_config, upsampled to 48^3 a third of the way.
        model = TensoRFConfig(n_voxels_init=16**3, n_voxels_final=48**3, upsample_steps=(steps // 3,),
                              density_components=(4, 4, 4), appearance_components=(8, 8, 8), appearance_features=12,
                              mlp_hidden=32, max_samples=48, appearance_samples=8, mask_update_steps=())
        for seed, sampling in ((seed, way) for seed in args.seeds for way in ("every pixel alike", "by solid angle")):
            if sampling == "every pixel alike":  # the draw for the other lenses
                RayPool._draw_panorama_ids = lambda pool, key, size, single: pool.ids[  # noqa: E731
                    jax.random.randint(key, (size,), 0, pool.count)]
            else:
                RayPool._draw_panorama_ids = solid_angle
            run = args.run_root / f"{steps}_{seed}_{sampling.replace(' ', '_')}"
            shutil.rmtree(run, ignore_errors=True)
            cfg = TrainConfig(run_dir=run, steps=steps, batch_size=512, log_every=100, eval_every=0,
                              checkpoint_every=0, final_eval=False, eval_lpips=False, progress=False,
                              data=DataConfig(path=capture), model=model, seed=seed)
            t0 = time.perf_counter()
            train(cfg)
            minutes = (time.perf_counter() - t0) / 60
            psnr, ws = judge(run)
            row = f"| {sampling} | {steps} | {seed} | {psnr:.2f} | {ws:.2f} | {minutes:.1f} | {datetime.date.today()} |"
            print(row, flush=True)
            rows.append(row)
    RayPool._draw_panorama_ids = solid_angle
    add_rows(args.results, "## panorama_cpu.py (generated 360-degree panoramas, rays by solid angle, 2-core CPU)",
             "| rays drawn | steps | seed | held-out PSNR | held-out WS-PSNR | minutes | date |\n|---|---|---|---|---|---|---|", rows)


if __name__ == "__main__":
    main(tyro.cli(Args))
