"""Render every view of a split from a run's checkpoint and report PSNR / SSIM.

    python -m tensorf.eval --run-dir RUN --dataset-path DIR --split test

Writes RUN/eval/<split>_metrics.json ({"psnr", "ssim", "views": [...]}) and the rendered PNGs
(RUN/eval/<split>/<view>.png). The dataset may be any Blender-format folder; images are loaded
at the run's downscale.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from tensorf.data.blender import Views, load_blender
from tensorf.errors import exit_on_user_error
from tensorf.metrics import psnr, ssim


def evaluate_views(model, params, views: Views, out_dir: Path, split: str, chunk: int, verbose: bool = True) -> dict:
    from tensorf.train import render_view

    img_dir = Path(out_dir) / split
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, name in enumerate(views.names):
        rgb, _, _ = render_view(model, params, views, i, chunk)
        rgb = np.clip(rgb, 0.0, 1.0)
        row = {"view": name, "psnr": psnr(rgb, views.images[i]), "ssim": ssim(rgb, views.images[i])}
        rows.append(row)
        iio.imwrite(img_dir / f"{name}.png", (rgb * 255 + 0.5).astype(np.uint8))
        if verbose:
            print(f"{split}/{name}: PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.4f}", flush=True)
    metrics = {
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "views": rows,
    }
    (Path(out_dir) / f"{split}_metrics.json").write_text(json.dumps(metrics, indent=2))
    if verbose:
        print(f"{split} mean over {len(rows)} views: PSNR {metrics['psnr']:.2f}  SSIM {metrics['ssim']:.4f}")
    return metrics


@dataclasses.dataclass(frozen=True)
class EvalArgs:
    """Evaluate a trained run on every view of a Blender-format split."""

    run_dir: Path
    """Run directory written by train_lego.py."""
    dataset_path: Path | None = None
    """Dataset folder; defaults to the one the run trained on."""
    split: str = "test"
    """Split to render (transforms_<split>.json)."""
    step: int | None = None
    """Checkpoint step; defaults to the latest."""
    views: tuple[int, ...] = ()
    """Only these view indices of the split (default: all)."""
    chunk: int = 8192
    """Rays rendered per chunk (bounds memory)."""


def main(args: EvalArgs) -> dict:
    from tensorf.train import restore_run, select_views

    cfg, model, params, meta = restore_run(args.run_dir, args.step)
    root = args.dataset_path or cfg.data.path
    views = select_views(load_blender(root, args.split, cfg.data.downscale), args.views)
    print(f"run {args.run_dir} at step {meta['step']}, grid {tuple(meta['model_state']['resolution'])}; {root} split {args.split}")
    return evaluate_views(model, params, views, Path(args.run_dir) / "eval", args.split, args.chunk)


if __name__ == "__main__":
    import tyro

    with exit_on_user_error():
        main(tyro.cli(EvalArgs))
