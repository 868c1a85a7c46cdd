"""Depth supervision (--data.depth) on the generated capture with depth maps: five training views
around the scene, the tests' tiny TensoRF at 48^3 (or a small NeRF, mip-NeRF 360), 600 steps
each, with and without the depth loss at several weights and spreads. Prints, and appends to
benchmarks/results.md, the held-out views' PSNR and how far the surfaces their expected depth
lands on are from the true ones (in the capture's units; the scene is about 2.4 across).

    python benchmarks/depth_cpu.py                  # the rows of results.md, "depth_cpu.py"
    python benchmarks/depth_cpu.py --family nerf --runs none 0.1/0.05
"""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import sys
import time
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from common import ROOT, add_rows  # noqa: E402
from tensorf.config import (  # noqa: E402
    DataConfig,
    MipNeRF360Config,
    NeRFConfig,
    OptimConfig,
    TensoRFConfig,
    TrainConfig,
)
from tensorf.data.dataset import load_dataset  # noqa: E402
from tensorf.data.generated import generate_depth_capture, surface_distance  # noqa: E402
from tensorf.data.rays import view_rays  # noqa: E402
from tensorf.render import render_rays_chunked  # noqa: E402
from tensorf.run import restore_run  # noqa: E402
from tensorf.training.loop import train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Depth loss weights and spreads against no depth, on five generated views."""

    runs: tuple[str, ...] = ("none", "0.001/0.1", "0.1/0.1", "0.1/0.05", "0.1/0.02", "0.3/0.05", "1.0/0.05")
    """none, or depth_weight/depth_sigma."""
    family: Literal["tensorf", "nerf", "mipnerf360"] = "tensorf"
    """The model: the tests' tiny TensoRF, or a small NeRF / mip-NeRF 360 (4 x 64 MLPs; the
    latter on the capture contracted)."""
    steps: int = 600
    run_root: Path = Path("runs/depth_bench")
    results: Path = ROOT / "benchmarks" / "results.md"


def judge(run_dir: Path) -> tuple[float, float, float]:
    """(held-out PSNR, median and 90th percentile of |distance to the nearest true surface| of the
    points at each opaque pixel's expected depth, in the capture's units)."""
    cfg, model, params, _ = restore_run(run_dir)
    data = load_dataset(cfg.data)
    psnrs, gaps = [], []
    for i in range(len(data.eval.names)):
        out = render_rays_chunked(model, params, view_rays(data.eval, i), 1024)
        truth = data.eval.images[i].reshape(-1, 3)
        psnrs.append(-10 * np.log10(np.mean((np.asarray(out.rgb) - truth) ** 2)))
        o, d, _ = data.eval.cameras.rays(i)
        opacity = np.asarray(out.opacity)
        ends = np.asarray(o, np.float64).reshape(-1, 3) + np.asarray(d, np.float64).reshape(-1, 3) * (
            np.asarray(out.depth) / np.maximum(opacity, 1e-6))[:, None]
        ends = ends @ data.to_source[:3, :3].T + data.to_source[:3, 3]
        gaps.append(np.abs(surface_distance(ends))[opacity > 0.5])
    gaps = np.concatenate(gaps)
    return float(np.mean(psnrs)), float(np.median(gaps)), float(np.quantile(gaps, 0.9))


def main(args: Args) -> None:
    capture = args.run_root / "capture"
    if not (capture / "transforms.json").is_file():
        generate_depth_capture(capture, size=32, n=10)
    # tests/test_depth.py's model (conftest's tiny_config at 48^3, one upsampling at step 50), with
    # no TV, as results.md's rows were measured (TV auto gives this 360 capture 0.1 since stop 54).
    model = {
        "tensorf": TensoRFConfig(n_voxels_init=16**3, n_voxels_final=48**3, upsample_steps=(50,),
                                 density_components=(4, 4, 4), appearance_components=(8, 8, 8), appearance_features=12,
                                 mlp_hidden=32, max_samples=48, appearance_samples=8, mask_update_steps=(),
                                 tv_weight_density=0.0, tv_weight_appearance=0.0),
        "nerf": NeRFConfig(net_depth=4, net_width=64, net_width_condition=32, coarse_samples=32, fine_samples=64),
        "mipnerf360": MipNeRF360Config(net_depth=4, net_width=64, net_width_condition=32, proposal_depth=2,
                                       proposal_width=32, proposal_samples=(32,), samples=32, anneal_steps=300),
    }[args.family]
    optim = OptimConfig() if args.family == "tensorf" else OptimConfig(lr_mlp=5e-3)
    contraction = {"tensorf": "auto", "nerf": "none", "mipnerf360": "linf"}[args.family]
    rows = []
    for name in args.runs:
        depth = name != "none"
        weight, sigma = map(float, name.split("/")) if depth else (model.depth_weight, model.depth_sigma)
        run = args.run_root / f"{args.family}_{name.replace('/', '_')}"
        shutil.rmtree(run, ignore_errors=True)
        cfg = TrainConfig(run_dir=run, steps=args.steps, batch_size=256, log_every=100, eval_every=0,
                          checkpoint_every=0, final_eval=False, eval_lpips=False, progress=False,
                          data=DataConfig(path=capture, depth=depth, hold_every=2, contraction=contraction), optim=optim,
                          model=dataclasses.replace(model, depth_weight=weight, depth_sigma=sigma))
        t0 = time.perf_counter()
        train(cfg)
        minutes = (time.perf_counter() - t0) / 60
        psnr, median, q90 = judge(run)
        what = (f"depth weight {weight:g}, sigma {sigma:g}" if depth else "no depth") + (
            f" ({args.family})" if args.family != "tensorf" else "")
        row = f"| {what} | {args.steps} | {psnr:.2f} | {median:.4f} | {q90:.4f} | {minutes:.1f} | {datetime.date.today()} |"
        print(row, flush=True)
        rows.append(row)
    add_rows(args.results, "## depth_cpu.py (depth supervision, generated capture with depth maps, 5 views)",
             "| run | steps | held-out PSNR | surface distance, median | 90% | minutes | date |\n"
             "|---|---|---|---|---|---|---|", rows)


if __name__ == "__main__":
    main(tyro.cli(Args))
