"""The generated 360-degree capture with a backdrop at infinity (tensorf.data.generated's
generate_unbounded, 32x32 views), at tests/test_unbounded.py's sizes: a box
fitted to what the cameras see, scene contraction with samples spread as mip-NeRF 360's first
pass, and contraction with proposal sampling (the unbounded presets' treatment).

    python benchmarks/unbounded_cpu.py [--steps 600] [--run-root runs/unbounded_bench]

Prints and appends a row per run to benchmarks/results.md: held-out PSNR over all pixels, over
the backdrop's (pixels that see only the sky) and over the rest. Prints where each run put the
backdrop (backdrop_probe).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import shutil
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import ROOT, add_rows  # noqa: E402
from tensorf.config import DataConfig, MipNeRF360Config, OptimConfig, TensoRFConfig, TrainConfig  # noqa: E402
from tensorf.data.dataset import load_eval_views  # noqa: E402
from tensorf.data.generated import generate_unbounded, render_view  # noqa: E402
from tensorf.data.rays import view_rays  # noqa: E402
from tensorf.render import contract, render_rays_chunked  # noqa: E402
from tensorf.run import restore_run  # noqa: E402
from tensorf.training.loop import train  # noqa: E402


# tests/test_unbounded.py's model: small components, a 32^3 -> 64^3 grid, one upsampling; no
# near-camera gradient scaling and no TV but in the rows that say so (TV auto would give this 360
# capture 0.1 since stop 54; the rows before it ran with none).
BASE = TensoRFConfig(n_voxels_init=32**3, n_voxels_final=64**3, upsample_steps=(50,), density_components=(4, 4, 4),
                     appearance_components=(8, 8, 8), appearance_features=12, mlp_hidden=32, max_samples=128,
                     appearance_samples=8, mask_update_steps=(), filter_rays=False, near_gradient_distance=0.0,
                     tv_weight_density=0.0, tv_weight_appearance=0.0)
# The proposal model of tests/test_unbounded.py's contracted run (there with the presets'
# near-camera distance and shell, the last row here).
PROPOSALS = dataclasses.replace(BASE, proposal_samples=(64, 32), proposal_resolution=(32, 64), proposal_final_samples=32,
                                proposal_anneal_steps=100)
PROPOSALS_96 = dataclasses.replace(PROPOSALS, n_voxels_final=96**3)
# The model's auto distance: 0.5 contracted, 1 in the fitted box.
SCALED = dataclasses.replace(PROPOSALS_96, near_gradient_distance="auto")
CONTRACTED = DataConfig(contraction="linf")
# mip-NeRF 360 (model:mipnerf360) shrunk for a 2-core CPU: 4x128 NeRF MLP and 2x64 proposal MLPs
# instead of 8x1024 and 4x256, its 64 + 64 -> 32 samples, resampling annealed over the run, its
# recipe's rates (2e-3 decaying to 2e-5, Adam (0.9, 0.999), gradient norm clipped at 1e-3) with the
# warm-up cut from 512 to 50 steps for runs this short; the presets' contraction shell.
MIPNERF360_SMALL = MipNeRF360Config(net_depth=4, net_width=128, skip_layer=2, proposal_depth=2, proposal_width=64)
MIPNERF360_OPTIM = OptimConfig(lr_mlp=2e-3, lr_decay_ratio=0.01, betas=(0.9, 0.999), lr_delay_steps=50,
                               lr_delay_mult=0.01, grad_max_norm=1e-3)
RUNS = {
    "fitted box": (DataConfig(), BASE),
    "fitted box, near-camera gradients scaled": (DataConfig(), dataclasses.replace(BASE, near_gradient_distance="auto")),
    "contracted, no proposals": (CONTRACTED, BASE),
    "contracted, proposals, 96^3": (CONTRACTED, PROPOSALS_96),
    "contracted, proposals, 64^3": (CONTRACTED, PROPOSALS),
    "contracted, proposals, 96^3, near-camera gradients scaled": (CONTRACTED, SCALED),
    # Thinner contracted shells (--data.contraction-shell) leave more of the grid to the unit region.
    **{f"contracted, proposals, 96^3, near-camera gradients scaled, shell {shell}":
       (dataclasses.replace(CONTRACTED, contraction_shell=shell), SCALED) for shell in (0.5, 0.2)},
    # TensoRF's TV recipe for real captures (the official LLFF configs: density and appearance 1.0).
    "contracted, proposals, 96^3, near-camera gradients scaled, shell 0.5, TV 1.0":
        (dataclasses.replace(CONTRACTED, contraction_shell=0.5),
         dataclasses.replace(SCALED, tv_weight_density=1.0, tv_weight_appearance=1.0)),
    "mip-NeRF 360, 4x128 MLP, shell 0.5": (dataclasses.replace(CONTRACTED, contraction_shell=0.5), MIPNERF360_SMALL),
    # Proposal padding (--model.proposal-padding; nerfacto's 0.01, the default since stop 51). The
    # rows above take the default; results.md rows that do not name it, up to the mip-NeRF 360 and
    # TV rows of stop 50, ran with none.
    **{f"contracted, proposals, 96^3, near-camera gradients scaled, shell 0.5{tv}, proposal padding {pad}":
       (dataclasses.replace(CONTRACTED, contraction_shell=0.5),
        dataclasses.replace(SCALED, proposal_padding=pad, **weights))
       for tv, weights in (("", {}), (", TV 1.0", dict(tv_weight_density=1.0, tv_weight_appearance=1.0)))
       for pad in (0.0, 0.01, 0.05, 0.2)},
    # Resampling annealed over a whole 3000-step run, as multinerf does, not the test's 100 steps.
    "contracted, proposals, 96^3, near-camera gradients scaled, shell 0.5, TV 1.0, proposal padding 0.01, "
    "annealed over 3000 steps":
        (dataclasses.replace(CONTRACTED, contraction_shell=0.5),
         dataclasses.replace(SCALED, proposal_padding=0.01, tv_weight_density=1.0, tv_weight_appearance=1.0,
                             proposal_anneal_steps=3000)),
}


@dataclasses.dataclass(frozen=True)
class Args:
    """Box against contraction against proposals on the generated 360 capture."""

    steps: int = 600
    """Training steps per run (the test trains 1500: docs/unbounded.md)."""
    size: int = 32
    """Width and height of the capture's views (the test's: 32). Captures of other sizes go to
    RUN_ROOT/capture_<size>."""
    runs: tuple[str, ...] = tuple(RUNS)
    """Which runs to train (the names of the table's rows)."""
    run_root: Path = Path("runs/unbounded_bench")
    """Runs go to RUN_ROOT/<name>; the capture to RUN_ROOT/capture."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the rows are appended to."""


def split_psnr(run_dir: Path, capture: Path, size: int) -> tuple[float, float]:
    """PSNR of the eval views' backdrop pixels and of the rest (views of size x size)."""
    frames = json.loads((capture / "transforms.json").read_text())["frames"]
    sky, rest = [], []
    for k in range(0, len(frames), 8):
        mask = render_view(np.asarray(frames[k]["transform_matrix"]), size)[..., 3] == 0
        truth = iio.imread(capture / "images" / f"frame{k:03d}.png")[..., :3] / 255.0
        got = iio.imread(run_dir / "eval" / "test" / f"frame{k:03d}.png")[..., :3] / 255.0
        err = ((truth - got) ** 2).mean(-1)
        sky.append(err[mask])
        rest.append(err[~mask])
    psnr = lambda e: -10 * math.log10(float(np.concatenate(e).mean()))  # noqa: E731
    return psnr(sky), psnr(rest)


def backdrop_probe(run_dir: Path) -> str:
    """Where the trained field puts what the held-out views' backdrop pixels see (docs/unbounded.md,
    proposal padding): their mean opacity (1: the field is opaque there, no background shows
    through), the contracted radius (L-infinity) of their median-depth points (the unit region
    ends at 1, infinity is at 1 + shell; the cameras stand 0.7 to 1.0 from the centre), and the
    subject's median depth in view 0."""
    cfg, model, params, _ = restore_run(run_dir)
    views, _ = load_eval_views(cfg.data)
    frames = json.loads((cfg.data.path / "transforms.json").read_text())["frames"]
    opacity, radius, subject = [], [], None
    for i, name in enumerate(views.names):
        rays = view_rays(views, i)
        out = render_rays_chunked(model, params, rays, 1024)
        size = views.size(i)[0]
        sky = render_view(np.asarray(frames[int(name[-3:])]["transform_matrix"]), size)[..., 3].reshape(-1) == 0
        depth = np.asarray(out.median_depth).reshape(-1)
        points = np.asarray(rays.origins).reshape(-1, 3) + np.asarray(rays.directions).reshape(-1, 3) * depth[:, None]
        r = np.abs(np.asarray(contract(jnp.asarray(points), cfg.data.contraction, cfg.data.contraction_shell))).max(-1)
        opacity.append(np.asarray(out.opacity).reshape(-1)[sky])
        radius.append(np.median(r[sky]))
        subject = subject if subject is not None else float(np.median(depth[~sky]))
    return (f"backdrop opacity {np.concatenate(opacity).mean():.3f}, its median depth at contracted radius "
            f"{min(radius):.2f} to {max(radius):.2f} (per view); subject's median depth in view 0 {subject:.2f}")


def main(args: Args) -> None:
    capture = args.run_root / ("capture" if args.size == 32 else f"capture_{args.size}")
    if not (capture / "transforms.json").is_file():
        generate_unbounded(capture, size=args.size, n=40)
    rows = []
    unknown = sorted(set(args.runs) - set(RUNS))
    if unknown:
        raise SystemExit(f"error: unknown --runs {unknown}; choose from {list(RUNS)}")
    for name in args.runs:
        data, model = RUNS[name]
        run = args.run_root / name.replace(" ", "_").replace(",", "")
        shutil.rmtree(run, ignore_errors=True)
        nerf = isinstance(model, MipNeRF360Config)
        if nerf:
            model = dataclasses.replace(model, anneal_steps=args.steps)
        cfg = TrainConfig(run_dir=run, steps=args.steps, batch_size=512, log_every=100, eval_every=0,
                          checkpoint_every=0, render_chunk=1024, eval_lpips=False, progress=False,
                          data=dataclasses.replace(data, path=capture), model=model,
                          optim=MIPNERF360_OPTIM if nerf else OptimConfig())
        t0 = time.perf_counter()
        result = train(cfg)
        minutes = (time.perf_counter() - t0) / 60
        sky, rest = split_psnr(run, capture, args.size)
        rows.append(f"| {datetime.date.today()} | {name}{'' if args.size == 32 else f', {args.size}x{args.size} views'} | {args.steps} | {result.eval_metrics['psnr']:.2f} | "
                    f"{sky:.2f} | {rest:.2f} | {minutes:.1f} |")
        print(rows[-1], flush=True)
        print(f"  {name}: {backdrop_probe(run)}", flush=True)
    add_rows(
        args.results,
        "## unbounded_cpu.py (generated 360 capture with a backdrop at infinity, 32x32 views, 5 held out, 2-core CPU)",
        "| date | run | steps | PSNR | backdrop PSNR | subject PSNR | minutes (with eval) |\n|---|---|---|---|---|---|---|",
        rows,
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
